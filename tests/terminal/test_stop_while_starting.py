"""A stop signal that comes while wai is still starting (importing its libraries, reading the
command line) ends it as one mid-turn does: the documented exit status, the one line on stderr,
and under `--json`/`--jsonl` the JSON document with `error`; never a traceback, never a silent kill.

wai's start is made slow and observable by a `sitecustomize` that holds the import of Typer (the
first heavy library the command imports) for a few seconds after saying so in a file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import WAI

SLOW_START = """
import importlib.abc, os, sys, time

class _HoldTyper(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "typer":
            sys.meta_path.remove(self)
            open(os.environ["WAI_TEST_STARTING"], "w").close()
            time.sleep(3)
        return None

sys.meta_path.insert(0, _HoldTyper())
"""

STOPS = [
    pytest.param(signal.SIGINT, 130, id="SIGINT"),
    pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
    pytest.param(signal.SIGHUP, 129, id="SIGHUP"),
]


def stopped_while_starting(
    tmp_path: Path, stop: signal.Signals, *args: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "sitecustomize.py").write_text(SLOW_START)
    marker = tmp_path / "starting"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "WAI_TEST_STARTING": str(marker),
    }
    child = subprocess.Popen(
        [WAI, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "wai never reached the import of Typer"
    child.send_signal(stop)
    out, err = child.communicate(timeout=30)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


@pytest.mark.e2e
@pytest.mark.parametrize(("stop", "status"), STOPS)
def test_a_stop_while_wai_starts_still_gives_the_json_document(
    tmp_path: Path, stop: signal.Signals, status: int
) -> None:
    run = stopped_while_starting(tmp_path, stop, "ask", "--json", "--no-stdin", "hi")
    assert run.returncode == status, run.stderr
    assert "Traceback" not in run.stderr
    assert "wai: warning: interrupted" in run.stderr
    error = json.loads(run.stdout)["error"]
    assert error["code"] == "interrupted" and error["exit_status"] == status


@pytest.mark.e2e
def test_a_stop_while_wai_starts_ends_a_jsonl_stream_with_its_error_event(tmp_path: Path) -> None:
    run = stopped_while_starting(tmp_path, signal.SIGTERM, "ask", "--jsonl", "--no-stdin", "hi")
    assert run.returncode == 143, run.stderr
    [event] = [json.loads(line) for line in run.stdout.splitlines()]
    assert event["type"] == "error" and event["exit_status"] == 143


@pytest.mark.e2e
def test_a_stop_while_wai_starts_a_command_that_prints_help_still_ends_as_stopped(tmp_path: Path) -> None:
    run = stopped_while_starting(tmp_path, signal.SIGTERM, "ask", "--help")
    assert run.returncode == 143
    assert "Traceback" not in run.stderr

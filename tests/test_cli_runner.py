"""`run_wai`, the in-process `wai` of most tests: what a process would give back, and nothing left
behind in the test process for the next test to trip over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_wai
from tests.support.workers_ai_server import Reply, WorkersAIServer

MODEL = "@cf/meta/llama-2-7b-chat-fp16"


def process_state() -> dict[str, Any]:
    return {
        "streams": (sys.stdin, sys.stdout, sys.stderr),
        "argv": list(sys.argv),
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "signals": {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)},
    }


def test_a_run_gives_back_exit_code_stdout_and_stderr_and_leaves_nothing_behind(tmp_path: Path) -> None:
    before = process_state()
    counted = run_wai(
        "tokens", "--json", "-m", MODEL, "-", stdin="héllo".encode(), env={"WAI_X": "1"}, cwd=tmp_path
    )
    assert counted.returncode == 0, counted.stderr
    assert json.loads(counted.stdout)["model"] == MODEL and counted.stderr == ""
    refused = run_wai("ask", "--no-such-option")
    assert refused.returncode == 2 and refused.stdout == "" and "No such option" in refused.stderr
    assert process_state() == before


def test_a_run_past_its_timeout_is_interrupted_and_raises_as_subprocess_would(
    server: WorkersAIServer,
) -> None:
    server.script(Reply(headers={"Content-Type": "text/event-stream"}, end="hang"))
    before = process_state()
    with pytest.raises(subprocess.TimeoutExpired):
        run_wai("ask", "-m", MODEL, "hi", timeout=1)
    assert process_state() == before
    # The next run starts fresh: not interrupted, nothing of the last one's signal kept.
    server.script(Reply.sse([{"response": "fine"}]))
    assert run_wai("ask", "-m", MODEL, "hi").stdout == "fine\n"

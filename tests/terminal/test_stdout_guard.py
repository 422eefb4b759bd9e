"""Standard output that cannot be written (`> /dev/full`, a closed descriptor): one line, exit 1."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import WAI, run_wai
from tests.support.workers_ai_server import WorkersAIServer

FP16 = "@cf/meta/llama-2-7b-chat-fp16"
FULL = "wai: error: cannot write the output: no space left on device\n"

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")


def into_dev_full(*args: str) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:
        return subprocess.run(
            [WAI, *args],
            stdin=subprocess.DEVNULL,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
            timeout=60,
        )


def logged_turns() -> list[dict[str, object]]:
    listed = json.loads(run_wai("logs", "--json").stdout)
    shown = json.loads(run_wai("logs", "--json", "--cid", listed[0]["id"]).stdout)
    turns: list[dict[str, object]] = shown["turns"]
    return turns


@pytest.mark.e2e
@pytest.mark.parametrize("mode", [(), ("--json",), ("--jsonl",), ("--no-stream",)])
def test_ask_into_a_full_disk_is_one_line_and_the_turn_is_kept(
    server: WorkersAIServer, mode: tuple[str, ...]
) -> None:
    done = into_dev_full("ask", "-m", FP16, *mode, "where is new york?")
    assert (done.returncode, done.stderr) == (1, FULL)
    turns = logged_turns()
    assert len(turns) == 1 and turns[0]["prompt"] == "where is new york?"
    assert turns[0]["error"] == "cannot write the output: no space left on device"
    if mode != ("--jsonl",):  # --jsonl fails on its first line, `start`, before the request is sent
        assert str(turns[0]["reply"]).startswith("token1")


@pytest.mark.e2e
def test_every_other_command_into_a_full_disk_is_one_line(server: WorkersAIServer) -> None:
    assert run_wai("ask", "-m", FP16, "hi").returncode == 0  # something for `wai logs` to show
    cid = json.loads(run_wai("logs", "--json").stdout)[0]["id"]
    for command in (
        ("logs",),
        ("logs", "--json"),
        ("logs", "--cid", cid),
        ("models",),
        ("models", "--json"),
        ("tokens", "-m", FP16, "hi"),
        ("ask", "-m", FP16, "--dry-run", "hi"),
        ("--help",),
        ("ask", "--help"),
        ("--version",),
    ):
        done = into_dev_full(*command)
        assert (done.returncode, done.stderr) == (1, FULL), command


@pytest.mark.e2e
def test_a_closed_stdout_is_one_line_too(server: WorkersAIServer) -> None:
    done = subprocess.run(
        f"exec {WAI} models >&-", shell=True, capture_output=True, text=True, env={**os.environ}, timeout=60
    )
    assert (done.returncode, done.stderr) == (1, "wai: error: cannot write the output: stdout is closed\n")

"""A $WAI_HOME, or a transcript database, that refuses writes (a read-only bind mount: it refuses
root too): every command says so in one line and does the work it still can."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import pty_spawn
from tests.support.chat_terminal import expect_prompt, leave, wai_command
from tests.support.cli import WAI
from tests.support.read_only import read_only_prefix, unavailable
from tests.support.workers_ai_server import WorkersAIServer

FP16 = "@cf/meta/llama-2-7b-chat-fp16"

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"{unavailable()}")


def run(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, WAI, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ},
        timeout=60,
    )


def one_warning_or_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def a_logged_turn() -> str:
    done = run([], "ask", "-m", FP16, "the question")
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, Any]] = json.loads(run([], "logs", "--json").stdout)
    return str(listed[0]["id"])


@pytest.mark.e2e
def test_a_read_only_home_costs_one_line_per_command(server: WorkersAIServer, isolated_home: Path) -> None:
    cid = a_logged_turn()
    (isolated_home / "chat_history").write_text("\n# 2024-01-01 00:00:00\n+an earlier question\n")
    locked = read_only_prefix([isolated_home])

    asked = run(locked, "ask", "-m", FP16, "hi")
    assert asked.returncode == 0 and asked.stdout.startswith("token1")
    line = one_warning_or_error(asked.stderr)
    assert line.startswith("wai: warning: this turn was not saved to the transcript:")
    assert "read-only file system" in line and "move it aside" not in line

    listed = run(locked, "logs")
    assert listed.returncode == 0 and cid in listed.stdout
    line = one_warning_or_error(listed.stderr)
    assert line == (
        f"wai: warning: {isolated_home / 'logs.db'}: cannot write the transcript database "
        "(read-only file system); reading it without writing"
    )
    shown = run(locked, "logs", "--cid", cid)
    assert shown.returncode == 0 and "> the question" in shown.stdout

    continued = run(locked, "ask", "-m", FP16, "-c", "and then?")
    assert continued.returncode == 0 and continued.stdout.startswith("token1")
    assert server.requests[-1].json["messages"][0]["content"] == "the question"

    for command in (("models",), ("tokens", "-m", FP16, "hi")):
        done = run(locked, *command)
        assert done.returncode == 0 and done.stderr == "", command

    setup = run(locked, "setup")
    assert setup.returncode == 2
    assert one_warning_or_error(setup.stderr) == (
        f"wai: error: cannot write {isolated_home / 'models'} (read-only file system); "
        f"{isolated_home / 'vocab'} (read-only file system): nothing was installed "
        "(WAI_HOME and WAI_MODELS_DIR choose others)"
    )

    # The chat runs, with one warning: earlier input history is still offered.
    child = pty_spawn.spawn(
        locked[0],
        [*locked[1:], *wai_command("chat"), "-m", FP16],
        env={**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"},
        dimensions=(40, 160),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect(
        re.escape(f"cannot write in {isolated_home} (read-only file system): ")
        + "this chat keeps no input history and no transcript"
    )
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("\x1b[A\r")  # Up: the earlier question
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert leave(child) == 0
    assert "Traceback" not in (child.before or "")
    assert server.requests[-1].json["messages"][-1]["content"] == "an earlier question"
    assert not (isolated_home / "chat_history").read_text().count("+hi")


@pytest.mark.e2e
def test_a_read_only_logs_db_in_a_writable_folder_is_still_listed(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    cid = a_logged_turn()
    database = isolated_home / "logs.db"
    locked = read_only_prefix([database])
    listed = run(locked, "logs", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout)[0]["id"] == cid
    line = one_warning_or_error(listed.stderr)
    assert "cannot write the transcript database (read-only file system)" in line
    asked = run(locked, "ask", "-m", FP16, "hi")
    assert asked.returncode == 0 and asked.stdout.startswith("token1")
    line = one_warning_or_error(asked.stderr)
    assert "not saved" in line and "read-only file system" in line and "move it aside" not in line


@pytest.mark.e2e
def test_a_writable_logs_db_in_a_read_only_folder_is_still_listed(
    server: WorkersAIServer, isolated_home: Path, tmp_path: Path
) -> None:
    cid = a_logged_turn()
    database = isolated_home / "logs.db"
    elsewhere = tmp_path / "writable-logs.db"
    shutil.copyfile(database, elsewhere)
    locked = read_only_prefix([isolated_home], writable=[(elsewhere, database)])
    listed = run(locked, "logs")
    assert listed.returncode == 0 and cid in listed.stdout
    line = one_warning_or_error(listed.stderr)
    assert "cannot write the transcript database (its folder: read-only file system)" in line

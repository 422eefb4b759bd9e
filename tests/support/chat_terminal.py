"""Run `wai chat` on a pseudo-terminal, the way a person would, for tests and benchmarks."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import pexpect

from tests.support import pty_spawn

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]|\r")


def wai_command(name: str) -> list[str]:
    """`python -m wai NAME`: the installed package, as the `wai` script runs it."""
    return [sys.executable, "-m", "wai", name]


def spawn_chat(
    *args: str,
    env: Mapping[str, str] | None = None,
    rows: int = 40,
    cols: int = 120,
    timeout: float = 20,
) -> Any:
    """`wai chat ARGS` on a fresh pseudo-terminal (the test's environment plus `env`)."""
    command = wai_command("chat")
    full_env = {
        **os.environ,
        "TERM": "xterm-256color",
        # No terminal answers cursor-position requests here; do not wait for one.
        "PROMPT_TOOLKIT_NO_CPR": "1",
        **(env or {}),
    }
    return pty_spawn.spawn(
        command[0],
        [*command[1:], *args],
        env=full_env,
        dimensions=(rows, cols),
        encoding="utf-8",
        codec_errors="replace",
        timeout=timeout,
    )


def plain(text: str) -> str:
    """Terminal output without escape sequences or carriage returns."""
    return ANSI.sub("", text)


def expect_prompt(child: Any, model: str) -> int:
    """Wait for the prompt of `model`; returns the context tokens it shows."""
    child.expect(re.escape(model) + r"(?:\x1b\[[0-9;]*m)* (?:\x1b\[[0-9;]*m)*~?(\d+)/\d+")
    return int(child.match.group(1))


def leave(child: Any, keys: Sequence[str] = ("\x04",)) -> int:
    for key in keys:
        child.send(key)
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else -1)

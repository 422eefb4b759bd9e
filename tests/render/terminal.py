"""Run a program on a pseudo-terminal and read back what a person would see: the scrollback and
the screen, rebuilt by a terminal emulator (pyte) from the exact bytes the program wrote."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pyte

from tests.support import pty_spawn

DRIVER = Path(__file__).with_name("panel_driver.py")


@dataclass
class Run:
    raw: str  # everything the program wrote, escape sequences included
    lines: list[str]  # scrollback then screen, trailing spaces and trailing empty rows dropped
    exit_status: int | None
    cursor_visible: bool


def rebuild(raw: str, rows: int, cols: int) -> tuple[list[str], bool]:
    screen = pyte.HistoryScreen(cols, rows, history=100_000, ratio=0.5)
    stream = pyte.Stream(screen)
    stream.feed(raw)

    def text(line: dict[int, pyte.screens.Char]) -> str:
        return "".join(line[x].data for x in range(cols)).rstrip()

    lines = [text(line) for line in screen.history.top] + [text(screen.buffer[y]) for y in range(rows)]
    while lines and not lines[-1]:
        lines.pop()
    return lines, not screen.cursor.hidden


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    env.update(extra or {})
    return env


def spawn_driver(
    markdown: Path, *args: str, rows: int = 24, cols: int = 80, env: dict[str, str] | None = None
) -> pexpect.spawn:
    return pty_spawn.spawn(
        sys.executable,
        [str(DRIVER), str(markdown), *args],
        env=environment(env),
        dimensions=(rows, cols),
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
    )


def finish(child: pexpect.spawn, rows: int, cols: int, before: str = "") -> Run:
    child.expect(pexpect.EOF)
    raw = before + (child.before or "")
    child.close()
    lines, cursor_visible = rebuild(raw, rows, cols)
    return Run(raw=raw, lines=lines, exit_status=child.exitstatus, cursor_visible=cursor_visible)


def run_driver(
    markdown: Path, *args: str, rows: int = 24, cols: int = 80, env: dict[str, str] | None = None
) -> Run:
    return finish(spawn_driver(markdown, *args, rows=rows, cols=cols, env=env), rows, cols)

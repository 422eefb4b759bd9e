"""One-line warnings and errors on stderr, coloured only where the user wants colour."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from wai.terminal.safe_text import terminal_line, terminal_safe


def stderr_wants_color(mode: str, stream: TextIO) -> bool:
    if mode == "always":
        return True
    if mode == "never" or "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


class Notifier:
    def __init__(self, *, color: bool = False, stream: TextIO | None = None) -> None:
        self.color = color
        self.stream = stream or sys.stderr

    def _line(self, label: str, code: str, message: str) -> None:
        prefix = f"\x1b[{code}m{label}\x1b[0m" if self.color else label
        # A message may quote a server, a model or a path: show its text, never its control
        # sequences, on the one line a message is.
        message = terminal_line(message)
        try:
            self.stream.write(f"{prefix} {message}\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr gone, full or hung up: nowhere left to say it
            pass

    def warn(self, message: str) -> None:
        self._line("wai: warning:", "33", message)

    def error(self, message: str) -> None:
        self._line("wai: error:", "1;31", message)

    def info(self, message: str) -> None:
        self._line("wai:", "2", message)

    def debug(self, message: str) -> None:
        self._line("wai: debug:", "2", message)


class WarningsKept(Notifier):
    """The same lines as `notifier`, and a list of what it warned of: for the warnings a command
    tells again in its JSON (what stdin or an argument held that was not text, say)."""

    def __init__(self, notifier: Notifier) -> None:
        super().__init__(color=notifier.color, stream=notifier.stream)
        self.kept: list[str] = []

    def warn(self, message: str) -> None:
        self.kept.append(message)
        super().warn(message)


def echo_stderr(text: str) -> None:
    """Diagnostic text from a library (llama.cpp's log) on stderr as it comes, as text only."""
    try:
        sys.stderr.write(terminal_safe(text))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass

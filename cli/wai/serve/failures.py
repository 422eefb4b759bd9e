"""Failures nothing in wai expected, written to the log: one line, or the traceback with --debug."""

from __future__ import annotations

from collections.abc import Callable

from wai.terminal.safe_text import log_safe


def one_line(error: BaseException) -> str:
    """`ValueError: what it said`, on one line (a client's text in it cannot start another)."""
    text = log_safe(" ".join(str(error).split()))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def log_unexpected(log: Callable[[str], None], debug: bool, what: str, error: BaseException) -> None:
    if debug:
        import traceback

        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
        lines = "\n".join(log_safe(line) for line in trace.splitlines())
        log(f"{log_safe(what)}: {one_line(error)}\n{lines}")
    else:
        log(f"{log_safe(what)}: {one_line(error)} (--debug logs the traceback)")

"""Failures nothing in wai expected, written to the log: one line, or the traceback with --debug."""

from __future__ import annotations

from collections.abc import Callable


def one_line(error: BaseException) -> str:
    """`ValueError: what it said`, on one line."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def log_unexpected(log: Callable[[str], None], debug: bool, what: str, error: BaseException) -> None:
    if debug:
        import traceback

        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
        log(f"{what}: {one_line(error)}\n{trace}")
    else:
        log(f"{what}: {one_line(error)} (--debug logs the traceback)")

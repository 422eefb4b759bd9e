"""Ctrl-C, and the signals that mean the same: SIGTERM (`kill`, `timeout`, systemd) and SIGHUP (the
terminal window closed).

All three stop wai the same way: Python's KeyboardInterrupt, so the reply so far is kept in the
transcript, marked interrupted, and the terminal gets its cursor and modes back. The exit status
then says which signal it was, as shells expect: 130, 143 or 129.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

_TERMINATING = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)  # Windows has no SIGHUP
_received: int | None = None  # the terminating signal that stopped wai, if one did
_held: int | None = None  # a stop signal that came while wai was still starting


def hold() -> None:
    """While wai starts (its imports, parsing the command line), a stop signal is noted, not acted
    on: acted on there it would be a traceback, or a kill with no word and no `--json` document.
    `install()` then acts on it, where every other stop is handled. Only the command's own first
    code calls this: a program that imports wai keeps its signals."""
    global _held
    _held = None
    for number in (signal.SIGINT, *_TERMINATING):
        if signal.getsignal(number) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(number, _hold)


def _hold(number: int, frame: FrameType | None) -> None:
    global _held
    if _held is None:
        _held = number


def held() -> int | None:
    """The stop signal noted while wai started and not yet acted on, if one was."""
    return _held


def install() -> None:
    """From now on SIGTERM and SIGHUP stop wai the way Ctrl-C does; a stop that came while wai was
    starting stops it now (KeyboardInterrupt)."""
    global _held, _received
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is _hold:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for number in _TERMINATING:
        # `nohup` ignores SIGHUP: so does wai
        if signal.getsignal(number) in (signal.SIG_DFL, _hold):
            signal.signal(number, _interrupt)
    if _held is not None:
        number, _held = _held, None
        if number != signal.SIGINT:
            _received = number
        raise KeyboardInterrupt


def _interrupt(number: int, frame: FrameType | None) -> None:
    global _received
    _received = number
    raise KeyboardInterrupt


def received() -> int | None:
    """SIGTERM or SIGHUP when one of them stopped wai; None after Ctrl-C or nothing."""
    return _received


def exit_code(code: int) -> int:
    """`code`, or 128 plus the terminating signal's number when one stopped wai."""
    return 128 + _received if _received is not None else code


@contextmanager
def deferred() -> Iterator[Callable[[], bool]]:
    """Inside the block a stop signal is noted instead of raised; leaving it raises KeyboardInterrupt.

    For code that must not be cut in the middle (a transcript write), and for C code that calls
    back into Python (llama.cpp's abort callback), where an exception raised inside the callback
    would be lost: the block gets a function that says whether a stop was asked for.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # signals reach the main thread only
        return
    noted: list[int] = []

    def note(number: int, frame: FrameType | None) -> None:
        noted.append(number)

    # A signal ignored where wai was started (a background job, `nohup`) stays ignored.
    numbers = [n for n in (signal.SIGINT, *_TERMINATING) if signal.getsignal(n) != signal.SIG_IGN]
    previous = {number: signal.signal(number, note) for number in numbers}
    try:
        yield lambda: bool(noted)
    finally:
        for number, handler in previous.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(number, handler)
        if noted:
            global _received
            if noted[0] != signal.SIGINT:
                _received = noted[0]
            raise KeyboardInterrupt

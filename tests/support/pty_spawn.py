"""pexpect's spawn, with the child started by subprocess instead of `os.forkpty()`.

The test process runs threads (the look-alike servers, pytest's own): a child forked from it
may deadlock before it execs, and Python 3.12 and later warn so at every `forkpty()`. Here the
pty pair comes from `os.openpty()` and the child from `subprocess.Popen`, which execs at once.
The child is still what a terminal starts: a session of its own, with the pty as its controlling
terminal, so Ctrl-C typed into it (`sendintr`) and the hang-up when it closes reach it as signals.
Everything else (expect, send, exitstatus, signalstatus) is pexpect's.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
from typing import Any

import pexpect
import ptyprocess

# Between the session Popen made (start_new_session) and the program: take the pty on stdin as
# the controlling terminal, then become the program. Only an exec, without site: a few ms.
_TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; "
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class _PopenPty(ptyprocess.PtyProcess):  # type: ignore[misc]
    """ptyprocess's view of a child that subprocess started and reaps."""

    terminated: bool
    status: int | None
    exitstatus: int | None
    signalstatus: int | None

    def __init__(self, process: subprocess.Popen[bytes], fd: int) -> None:
        super().__init__(process.pid, fd)
        self.process = process

    def isalive(self) -> bool:
        if self.terminated:
            return False
        code = self.process.poll()
        if code is None:
            return True
        self._ended(code)
        return False

    def wait(self) -> int | None:
        if not self.terminated:
            self._ended(self.process.wait())
        return self.exitstatus

    def _ended(self, code: int) -> None:
        # The fields as os.waitpid would have set them: an exit status or the signal's number.
        self.terminated = True
        if code < 0:
            self.status, self.exitstatus, self.signalstatus = -code, None, -code
        else:
            self.status, self.exitstatus, self.signalstatus = code << 8, code, None


def _start(
    argv: list[bytes] | list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    echo: bool = True,
    preexec_fn: object = None,
    dimensions: tuple[int, int] = (24, 80),
) -> _PopenPty:
    if preexec_fn is not None:
        raise ValueError("a child started without fork runs no preexec_fn")
    parent, child = os.openpty()
    try:
        rows, cols = dimensions
        fcntl.ioctl(parent, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        if not echo:
            modes = termios.tcgetattr(child)
            modes[3] &= ~termios.ECHO
            termios.tcsetattr(child, termios.TCSANOW, modes)
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _TAKE_TERMINAL, *(os.fsdecode(arg) for arg in argv)],
            stdin=child,
            stdout=child,
            stderr=child,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except BaseException:
        os.close(parent)
        raise
    finally:
        os.close(child)
    return _PopenPty(process, parent)


class _Spawn(pexpect.spawn):  # type: ignore[misc]
    def _spawnpty(self, args: list[bytes] | list[str], **kwargs: Any) -> _PopenPty:
        return _start(args, **kwargs)


def spawn(command: str, args: list[str] | None = None, **kwargs: Any) -> Any:
    """`pexpect.spawn(command, args, ...)`, the child started without forking this process."""
    return _Spawn(command, args or [], **kwargs)


__all__ = ["spawn"]

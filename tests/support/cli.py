"""Run `wai` as a user would, in-process (`run_wai`) or as the installed command (`run_wai_process`).

`run_wai` calls the same entry point the `wai` script calls, inside this process, with the call's
own argv, environment, working folder, stdin (a pipe fed by a thread, /dev/null when no input is
given) and stdout/stderr (real files, not terminals, read back as `subprocess.run(text=True)`
would decode them), and gives back what `subprocess.run` would: a CompletedProcess with the exit
code, stdout and stderr. Everything the call changed in this process is put back afterwards (sys
streams and argv, the environment, the working folder, signal handlers, wai's per-run module
state), so no test sees the one before it. What a process alone shows (signals, terminals, a
closed pipe, the installed script) is `run_wai_process`'s, and a test that uses it is marked `e2e`.
"""

from __future__ import annotations

import functools
import io
import locale
import os
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, TextIO

WAI = str(Path(sys.executable).with_name("wai"))

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def run_wai(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`wai ARGS` in this process, with this test's environment (WAI_HOME already isolated) plus `env`.

    Past `timeout` seconds the call is interrupted (as Ctrl-C would) and TimeoutExpired raised.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "run_wai swaps this process's streams and signal handlers: call it from the main thread"
        )
    argv = ["wai", *args]
    with (
        _captured(errors="strict") as out,  # as Python's own stdout and stderr in a pipe
        _captured(errors="backslashreplace") as err,
        _fed(stdin) as inp,
        _restored_process_state(env, cwd),
    ):
        sys.stdin, sys.stdout, sys.stderr, sys.argv = inp, out, err, argv
        timer = _Deadline(timeout)
        try:
            with timer:
                code = _exit_code_of_main()
        finally:
            for stream in (out, err):
                with suppress(OSError, ValueError):
                    stream.flush()
        if timer.expired:
            raise subprocess.TimeoutExpired(argv, timeout, output=_text(out), stderr=_text(err))
        return subprocess.CompletedProcess(argv, code, _text(out), _text(err))


def run_wai_process(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`wai ARGS` as the installed command in a subprocess, in a pipe: for what only a process shows."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [WAI, *args],
        input=stdin.decode() if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def _exit_code_of_main() -> int:
    """Run the entry point the `wai` script runs and turn its end into the exit status the
    interpreter would give."""
    try:
        _script()()
    except SystemExit as done:
        return _status(done.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
    except BaseException:  # an unexpected failure: Python prints it and exits 1
        traceback.print_exc()
        return 1
    return 0


@functools.cache
def _script() -> Callable[[], object]:
    """The `wai` script's entry point, as the installed package declares it."""
    from importlib.metadata import entry_points

    [script] = entry_points(group="console_scripts", name="wai")
    main: Callable[[], object] = script.load()
    return main


def _status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


@contextmanager
def _captured(*, errors: str) -> Iterator[TextIO]:
    """A text stream over a real (unnamed) file: it has a descriptor, and it is not a terminal."""
    with tempfile.TemporaryFile("wb+") as raw:
        stream = io.TextIOWrapper(raw, encoding="utf-8", errors=errors, write_through=False)
        try:
            yield stream
        finally:
            stream.detach()


def _text(stream: TextIO) -> str:
    """What the stream holds, decoded as `subprocess.run(text=True)` decodes (universal newlines)."""
    raw = stream.buffer
    raw.seek(0)
    data = raw.read()
    raw.seek(0, io.SEEK_END)
    return io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False)).read()


@contextmanager
def _fed(data: bytes | None) -> Iterator[TextIO]:
    """stdin: /dev/null without data, else the read end of a pipe that a thread fills and closes."""
    if data is None:
        with open(os.devnull, encoding="utf-8") as devnull:
            yield devnull
        return
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=_feed, args=(os.fdopen(write_fd, "wb"), data), daemon=True)
    writer.start()
    with open(read_fd, encoding="utf-8") as stream:
        try:
            yield stream
        finally:
            stream.close()  # a reader that stopped early: the writer gets BrokenPipeError and ends
            writer.join()


def _feed(pipe: BinaryIO, data: bytes) -> None:
    try:
        with pipe:
            pipe.write(data)
    except BrokenPipeError:
        pass


@contextmanager
def _restored_process_state(env: dict[str, str] | None, cwd: str | Path | None) -> Iterator[None]:
    streams = (sys.stdin, sys.stdout, sys.stderr, sys.argv)
    environ = dict(os.environ)
    folder = os.getcwd()
    handlers = {number: signal.getsignal(number) for number in _SIGNALS}
    os.environ.update(env or {})
    if cwd is not None:
        os.chdir(cwd)
    _reset_wai_state()
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr, sys.argv = streams
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(folder)
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)
        _reset_wai_state()


def _reset_wai_state() -> None:
    """What wai keeps for the length of one run, as a fresh process starts it."""
    from wai.llama import native
    from wai.terminal import stop_signals

    stop_signals._received = None
    stop_signals._held = None
    native.LOG.debug = False  # --debug echoes llama.cpp's log until the next local backend says otherwise


class _Deadline:
    """Interrupts the main thread with SIGINT (Ctrl-C) when a call outlives its timeout: a signal,
    so that a read blocked in the kernel returns to Python at once."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        self.expired = True
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)

    def __enter__(self) -> None:
        self._timer.start()

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

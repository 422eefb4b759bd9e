"""Uvicorn around the app: a socket bound beforehand, and a clean stop on SIGINT, SIGTERM, or SIGHUP
(the terminal it ran in was closed).

On the first signal the server stops accepting connections and requests still waiting for their
model are answered 503; the replies being decoded get SHUTDOWN_GRACE seconds to finish, then are
cut (their streams end with an error event, no `[DONE]`). A second signal cuts them at once.
Either way the process exits 0: Uvicorn's own habit of raising the signal again after its
shutdown is left out. A signal ignored where wai serve was started (`nohup`, a background job)
stays ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from wai.serve.connection import READ_TIMEOUT, connection_class
from wai.serve.failures import log_unexpected
from wai.serve.worker import Pool
from wai.terminal.safe_text import log_safe

SHUTDOWN_GRACE = 5.0
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)  # Windows has no SIGHUP
STOPPING = "wai serve is shutting down"
UVICORN_INVALID_HTTP = "Invalid HTTP request received."


class _Server(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, pool: Pool, say: Callable[[str], None], ready: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._pool = pool
        self._say = say
        self._ready = ready
        self._signals = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = [sig for sig in STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN]
        for sig in handled:
            signal.signal(sig, self.handle_exit)
        try:
            yield
        finally:
            # The server has stopped, but the process has not: the models are still being freed,
            # then the interpreter exits. Putting back the command line's handlers here (a stop
            # signal raises KeyboardInterrupt, exit 143) let a repeated signal in that moment turn
            # a graceful stop into a failure, and Python itself sets handled signals back to their
            # default (death by the signal) while it finalizes. Ignored ones it leaves ignored:
            # the stop asked for is under way, a further signal has nothing left to stop.
            for sig in handled:
                signal.signal(sig, signal.SIG_IGN)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        # Said once the signals are ours and the socket accepts: a client may connect at once.
        if not self.should_exit:
            self._ready()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit = True
        # A signal handler may interrupt the loop inside a lock; the work runs on the loop instead.
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._stop, signal.Signals(sig).name)

    def _stop(self, name: str) -> None:
        self._signals += 1
        if self._signals == 1:
            self._say(f"{name}: stopping; replies in flight get {SHUTDOWN_GRACE:g} s to finish")
            self._pool.stop_accepting(STOPPING)
            assert self.loop is not None
            self.loop.call_later(SHUTDOWN_GRACE, self._pool.cut_running, STOPPING)
        else:
            self._pool.cut_running(STOPPING)


def serve(
    app: ASGIApp,
    sock: socket.socket,
    pool: Pool,
    say: Callable[[str], None],
    ready: Callable[[], None],
    debug: bool = False,
    read_timeout: float = READ_TIMEOUT,
) -> None:
    """Run until a signal stops the server and every connection has ended; `ready` once it accepts."""
    quiet_uvicorn(say, debug)
    config = uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,  # ours leaves the query string (the page's token) out
        log_config=None,
        server_header=False,
        http=connection_class(read_timeout),
        loop="asyncio",
        ws="none",
        # Cut replies end within a token; this only bounds a connection that will not close.
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE) + 5,
    )
    server = _Server(config, pool, say, ready)

    async def main() -> None:
        server.loop = asyncio.get_running_loop()
        await server.serve(sockets=[sock])

    asyncio.run(main())


def quiet_uvicorn(say: Callable[[str], None], debug: bool = False) -> None:
    """Uvicorn's own messages: warnings and errors only, in wai's words on stderr. An exception
    that came with one is named on the same line; with --debug its traceback follows."""

    class _Say(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.msg == UVICORN_INVALID_HTTP:
                return  # the connection logs its own line: who, the status, what was wrong
            with contextlib.suppress(Exception):
                error = record.exc_info[1] if record.exc_info else None
                if error is None:
                    say(log_safe(record.getMessage()))
                else:
                    log_unexpected(say, debug, record.getMessage(), error)

    logger = logging.getLogger("uvicorn.error")
    logger.handlers = [_Say(level=logging.WARNING)]
    logger.setLevel(logging.WARNING)
    logger.propagate = False

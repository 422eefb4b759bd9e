"""One HTTP connection of `wai serve`, on Uvicorn's h11 protocol: how long a client may take to
send a request's header block, and a JSON answer to bytes that are not HTTP.

Uvicorn times out a connection only while it idles between requests: one that sent half a header
block held its socket until shutdown. Here a header block must arrive whole within the read
timeout of the connection's opening (or of the first byte of a later request on it); otherwise
the client gets 408 and the connection closes. The body's parts are timed where they are read
(app._body). Malformed HTTP gets the error envelope of both APIs (Cloudflare's `errors`, OpenAI's
`error`), as every other refusal does, instead of Uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import http
import json
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from wai.serve.protocol import INVALID_INPUT, ApiFailure, openai_error

READ_TIMEOUT = 10.0


class _Parser(h11.Connection):
    """h11's connection, keeping the protocol error it raised: its status and words make the reply."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as error:
            self.error = error
            raise


class Connection(H11Protocol):
    read_timeout = READ_TIMEOUT

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limit = config.h11_max_incomplete_event_size
        self.conn = _Parser(h11.SERVER) if limit is None else _Parser(h11.SERVER, limit)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of another request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request's start may already wait in the buffer.
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        error = self.conn.error if isinstance(self.conn, _Parser) else None
        status = error.error_status_hint if error is not None else 400
        said = str(error) if error is not None and str(error) else "malformed"
        self._answer(status, f"the request is not valid HTTP/1.1: {said}")

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if not self.conn.trailing_data[0]:
            self.transport.close()  # nothing asked: the connection just goes, as an idle one does
            return
        seconds = f"{self.read_timeout:g} s"
        self._answer(408, f"Request timeout: the header block did not arrive whole within {seconds}")

    def _answer(self, status: int, message: str) -> None:
        """The error, written as it is (h11 sends no response to a request it never read), then
        the connection closes; nothing is written over a reply already under way."""
        who = self.client[0] if self.client else "-"
        self.logger.warning(f'{who} "-" {status} · {message}')
        if self.cycle is None or not self.cycle.response_started:
            body = json.dumps(openai_error(ApiFailure(status, INVALID_INPUT, message))).encode()
            head = (
                f"HTTP/1.1 {status} {_phrase(status)}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
            )
            self.transport.write(head.encode("latin-1") + body)
        self.transport.close()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def connection_class(read_timeout: float) -> type[Connection]:
    """The protocol Uvicorn makes per connection, with this server's read timeout."""

    class Timed(Connection):
        pass

    Timed.read_timeout = read_timeout
    return Timed


__all__ = ["READ_TIMEOUT", "Connection", "connection_class"]

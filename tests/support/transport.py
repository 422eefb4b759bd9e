"""An HTTP transport injected under wai running in-process (httpx.MockTransport's idea).

`intercepted` puts a handler in front of httpx's real transport for one test: the handler answers a
request itself (a response, or an exception such as httpx.ReadTimeout raised at once instead of
after a real wait) or returns None to let the request through to the real server.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

Handler = Callable[[httpx.Request], httpx.Response | None]


def intercepted(monkeypatch: pytest.MonkeyPatch, handler: Handler) -> None:
    """For the rest of the test, every request wai sends goes through `handler` first."""
    real = httpx.HTTPTransport.handle_request

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        answer = handler(request)
        return answer if answer is not None else real(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)


def timing_out(route: str, read_timeouts: list[float]) -> Handler:
    """A server that never answers `route` ("POST /tokenize"): the read timeout wai set for it
    passes at once (noted in `read_timeouts`), as it would after that many seconds of silence."""
    method, path = route.split(" ", 1)

    def handler(request: httpx.Request) -> httpx.Response | None:
        if request.method != method or not request.url.path.endswith(path):
            return None
        read_timeouts.append(request.extensions["timeout"]["read"])
        raise httpx.ReadTimeout("timed out", request=request)

    return handler

"""The HTTP chat machinery's one client per backend, as wai batch's threads use it."""

from __future__ import annotations

import threading

from wai.backends.http.chat import StreamingChatBackend
from wai.backends.http.errors import Scrubber


def test_threads_asking_at_once_share_one_client_and_close_it() -> None:
    """A batch's first requests start together: each must get the same client, so that closing
    the backend closes every connection (a second client would leak its sockets)."""
    backend = StreamingChatBackend(scrub=Scrubber(), base_shown="http://127.0.0.1:9")
    start = threading.Barrier(8)
    clients: list[object] = []

    def first_request() -> None:
        start.wait()
        clients.append(backend._http())

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients) == 8 and len({id(client) for client in clients}) == 1
    backend.close()
    assert clients[0].is_closed  # type: ignore[attr-defined]

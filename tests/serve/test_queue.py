"""One request decodes at a time per model; a full queue refuses at once; a client that leaves, or a
signal, stops its decoding after the piece in flight."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.serve_process import Served, ServeProcess, sse_data, stream_text, write_catalog
from tests.support.tiny_gguf import TinyModel

LOOP = "@cf/test/loop"
LONG = {"prompt": "hi", "stream": True, "max_tokens": 25000}


@contextmanager
def decoding(server: ServeProcess, client: httpx.Client, events: int = 3) -> Iterator[httpx.Response]:
    """A long reply on the loop model, read up to its first few events, closed on leaving."""
    with client.stream("POST", server.run_url(LOOP), json=LONG, headers=server.headers) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()
        seen = 0
        while seen < events:
            seen += next(lines).startswith("data:")
        yield reply


def assert_3040(reply: httpx.Response) -> None:
    assert reply.status_code == 429, reply.text
    body = reply.json()
    assert body["success"] is False and [e["code"] for e in body["errors"]] == [3040]


@pytest.fixture
def one_at_a_time(isolated_home: Path, served: list[Served]) -> Iterator[ServeProcess]:
    """A server whose loop model takes one request and lets none wait (--max-queue 0)."""
    write_catalog(isolated_home, served)
    with ServeProcess(isolated_home, "--max-queue", "0", "-m", LOOP) as server:
        yield server


def test_a_full_queue_answers_429_3040_at_once(one_at_a_time: ServeProcess) -> None:
    with httpx.Client(timeout=60) as client, decoding(one_at_a_time, client):
        refused = client.post(
            one_at_a_time.run_url(LOOP), json={"prompt": "hi"}, headers=one_at_a_time.headers
        )
        assert_3040(refused)
        assert one_at_a_time.metrics()[LOOP]["refused"] == 1
    figures = one_at_a_time.wait_idle(LOOP)
    # The slot is free again once the first client left.
    again = httpx.post(
        one_at_a_time.run_url(LOOP),
        json={"prompt": "hi", "max_tokens": 7},
        headers=one_at_a_time.headers,
        timeout=60,
    )
    assert again.json()["result"]["response"] == "Hi 🎉!"
    assert figures["cancelled"] == 1


def test_reject_if_busy_refuses_instead_of_waiting(wai_serve: ServeProcess) -> None:
    wai_serve.wait_idle(LOOP)
    with httpx.Client(timeout=60) as client, decoding(wai_serve, client):
        body = {"prompt": "hi", "options": {"rejectIfBusy": True}}
        assert_3040(client.post(wai_serve.run_url(LOOP), json=body, headers=wai_serve.headers))
    wai_serve.wait_idle(LOOP)


def test_a_client_that_leaves_stops_its_decoding_within_a_token(wai_serve: ServeProcess) -> None:
    wai_serve.wait_idle(LOOP)
    with httpx.Client(timeout=60) as client, decoding(wai_serve, client, events=10):
        pass  # leaves after 10 events of a 25000-token reply
    figures = wai_serve.wait_idle(LOOP)
    cancel = figures["last_cancel"]
    assert cancel["reason"] == "client gone"
    # Between the server seeing the disconnect and the decoder stopping: at most one more piece.
    assert cancel["pieces_after_cancel"] is not None and cancel["pieces_after_cancel"] <= 1
    assert cancel["pieces"] < 25000
    line = wai_serve.wait_for(re.compile(r"cut after (\d+) tokens?: client gone; (\d) decoded after the cut"))
    assert int(line.group(2)) <= 1
    # The model is free for the next request.
    reply = httpx.post(
        wai_serve.run_url(LOOP), json={"prompt": "hi", "max_tokens": 7}, headers=wai_serve.headers, timeout=60
    )
    assert reply.json()["result"]["response"] == "Hi 🎉!"


def test_a_waiting_client_that_leaves_frees_its_place_in_the_queue(
    isolated_home: Path, served: list[Served]
) -> None:
    write_catalog(isolated_home, served)
    with (
        ServeProcess(isolated_home, "--max-queue", "1", "-m", LOOP) as server,
        httpx.Client(timeout=60) as client,
        decoding(server, client),
    ):
        gave_up = threading.Event()

        def impatient() -> None:
            try:
                httpx.post(server.run_url(LOOP), json={"prompt": "hi"}, headers=server.headers, timeout=1.5)
            except httpx.TimeoutException:
                gave_up.set()

        waiter = threading.Thread(target=impatient)
        waiter.start()
        waiter.join()
        assert gave_up.is_set()  # it waited behind the long reply, then left
        # Its place is free: another request may wait again instead of being refused.
        figures = server.metrics()[LOOP]
        for _ in range(100):
            if figures["waiting"] == 0:
                break
            figures = server.metrics()[LOOP]
        assert figures["waiting"] == 0 and figures["cancelled"] == 1 and figures["refused"] == 0


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_cuts_a_stream_cleanly_answers_the_waiting_and_exits_0(
    isolated_home: Path, served: list[Served], stop: signal.Signals
) -> None:
    # SIGHUP is the terminal that ran wai serve closing: the same graceful stop as SIGTERM.
    write_catalog(isolated_home, served)
    server = ServeProcess(isolated_home, "-m", LOOP)
    waited: list[httpx.Response] = []

    def wait_behind() -> None:
        body = {"prompt": "hi", "max_tokens": 7}
        waited.append(httpx.post(server.run_url(LOOP), json=body, headers=server.headers, timeout=60))

    waiter = threading.Thread(target=wait_behind)
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", server.run_url(LOOP), json=LONG, headers=server.headers) as reply,
    ):
        lines = reply.iter_lines()
        first = next(lines)
        waiter.start()
        while server.metrics()[LOOP]["waiting"] == 0:
            time.sleep(0.01)
        server.process.send_signal(stop)
        raw = "\n".join([first, *lines])
    waiter.join()
    assert server.stop() == 0
    datas = sse_data(raw)
    assert "[DONE]" not in datas  # a cut reply never looks whole
    events = [json.loads(d) for d in datas]  # every event whole, none garbled
    assert events[-1]["errors"][0]["code"] == 3043
    assert "shutting down" in events[-1]["errors"][0]["message"]
    text = "".join(e.get("response", "") for e in events[:-1])
    assert ("Hi 🎉!" * 5000).startswith(text)
    [refused] = waited
    assert refused.status_code == 503, refused.text
    [error] = refused.json()["errors"]
    assert error == {"code": 3040, "message": "wai serve is shutting down; try again later"}
    assert f"{stop.name}: stopping" in server.stderr and server.stderr.endswith("stopped")
    assert "Error" not in server.stderr


def test_a_hang_up_ignored_where_wai_serve_was_started_stays_ignored(
    isolated_home: Path, served: list[Served]
) -> None:
    write_catalog(isolated_home, served)
    with ServeProcess(isolated_home, "-m", LOOP, prefix=["nohup"]) as server:
        server.process.send_signal(signal.SIGHUP)
        reply = httpx.post(
            server.run_url(LOOP), json={"prompt": "hi", "max_tokens": 7}, headers=server.headers, timeout=60
        )
        assert reply.json()["result"]["response"] == "Hi 🎉!"
        assert "SIGHUP" not in server.stderr


def test_sigterm_again_and_again_until_it_exits_still_stops_gracefully(
    isolated_home: Path, served: list[Served]
) -> None:
    # A supervisor may repeat its signal (or a user press Ctrl-C twice) at any moment of the stop,
    # down to the last instant of the process: the stop stays the graceful one, exit 0.
    write_catalog(isolated_home, served)
    server = ServeProcess(isolated_home, "-m", LOOP)
    process = server.process

    def again_and_again() -> None:
        while process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            time.sleep(0.002)

    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", server.run_url(LOOP), json=LONG, headers=server.headers) as reply,
    ):
        lines = reply.iter_lines()
        first = next(lines)
        sender = threading.Thread(target=again_and_again)
        sender.start()
        raw = "\n".join([first, *lines])
    code = process.wait(30)
    sender.join()
    assert code == 0, server.stderr
    events = [json.loads(d) for d in sse_data(raw)]
    assert events[-1]["errors"][0]["code"] == 3043
    assert server.stderr.endswith("stopped") and "Traceback" not in server.stderr


def test_sigint_with_nothing_running_exits_0(isolated_home: Path, tiny_models: dict[str, TinyModel]) -> None:
    server = ServeProcess(isolated_home, "-m", str(tiny_models["f16"].path))
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.stderr


def test_a_reply_stopped_by_max_tokens_ends_whole_with_done(wai_serve: ServeProcess) -> None:
    # The contrast with a cut reply: a complete one ends with [DONE], whatever stopped it.
    reply = httpx.post(
        wai_serve.run_url(LOOP),
        json={"prompt": "hi", "stream": True, "max_tokens": 14},
        headers=wai_serve.headers,
        timeout=60,
    )
    text, _ = stream_text(sse_data(reply.text))
    assert text == "Hi 🎉!Hi 🎉!" and sse_data(reply.text)[-1] == "[DONE]"

"""`wai serve --parallel N`: N requests of one model decoded together, each getting what it gets
alone; a client that leaves frees its slot for the next request; each request's windows are its
slot's."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.serve_process import Served, ServeProcess, sse_data, stream_text, write_catalog
from wai.serve.worker import FAULT_ENV

pytestmark = pytest.mark.e2e

LOOP = "@cf/test/loop"
TINY = "@cf/test/tiny-f16"


@pytest.fixture
def four_slots(isolated_home: Path, served: list[Served]) -> Iterator[ServeProcess]:
    """Four slots a model, one request may wait."""
    write_catalog(isolated_home, served)
    with ServeProcess(
        isolated_home, "--parallel", "4", "--max-queue", "1", "--slot-context", "512"
    ) as server:
        yield server


def ask(server: ServeProcess, model: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.run_url(model), json=body, headers=server.headers, timeout=120)


def next_data(lines: Iterator[str]) -> str:
    for line in lines:
        if line.startswith("data:"):
            return line
    raise AssertionError("the stream ended")


def streamed(server: ServeProcess, model: str, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    with httpx.stream(
        "POST", server.run_url(model), json={**body, "stream": True}, headers=server.headers, timeout=120
    ) as reply:
        assert reply.status_code == 200, reply.read()
        return stream_text(sse_data("".join(reply.iter_text())))


def test_four_clients_at_once_each_get_what_they_get_alone(
    four_slots: ServeProcess, wai_serve: ServeProcess
) -> None:
    asks: list[tuple[str, dict[str, Any]]] = [
        (TINY, {"prompt": "where is new york?"}),
        (LOOP, {"prompt": "hi", "max_tokens": 7}),
        (TINY, {"messages": [{"role": "user", "content": "a longer question, if any"}]}),
        (LOOP, {"prompt": "a story", "max_tokens": 23}),
        (LOOP, {"prompt": "another", "max_tokens": 2}),
    ]
    alone = [ask(wai_serve, model, body).json()["result"] for model, body in asks]
    with ThreadPoolExecutor(len(asks)) as pool:
        together = list(pool.map(lambda each: ask(four_slots, *each), asks))
        at_once = list(pool.map(lambda each: streamed(four_slots, *each), asks))
    for got, streamed_got, expected in zip(together, at_once, alone, strict=True):
        assert got.status_code == 200, got.text
        assert got.json()["result"]["response"] == expected["response"]
        assert got.json()["result"]["usage"] == expected["usage"]
        assert streamed_got[0] == expected["response"]
    figures = four_slots.wait_idle(LOOP)
    assert figures["parallel"] == 4 and figures["completed"] == 6 and figures["failed"] == 0


def test_they_are_decoded_together_not_one_after_another(four_slots: ServeProcess) -> None:
    """Four long replies are all under way at once: each has its first words before any has ended."""
    firsts: list[float] = []
    ends: list[float] = []
    lock = threading.Lock()

    def long_reply() -> None:
        body = {"prompt": "go", "max_tokens": 300, "stream": True}
        url, headers = four_slots.run_url(LOOP), four_slots.headers
        with httpx.stream("POST", url, json=body, headers=headers, timeout=120) as reply:
            lines = reply.iter_lines()
            for line in lines:
                if line.startswith("data:"):
                    with lock:
                        firsts.append(time.monotonic())
                    break
            for _ in lines:
                pass
        with lock:
            ends.append(time.monotonic())

    threads = [threading.Thread(target=long_reply) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(firsts) == len(ends) == 4
    assert max(firsts) < min(ends)
    assert four_slots.wait_idle(LOOP)["completed"] == 4


def test_a_client_that_leaves_frees_its_slot_for_the_next_request(four_slots: ServeProcess) -> None:
    url, headers = four_slots.run_url(LOOP), four_slots.headers
    long = {"prompt": "hi", "stream": True, "max_tokens": 25000}
    with httpx.Client(timeout=120) as client, contextlib.ExitStack() as open_replies:
        replies = [
            open_replies.enter_context(client.stream("POST", url, json=long, headers=headers))
            for _ in range(4)
        ]
        # Each reply's lines read through one iterator: a dropped one would close its connection.
        streams = [reply.iter_lines() for reply in replies]
        try:
            for reply, lines in zip(replies, streams, strict=True):
                assert reply.status_code == 200
                next_data(lines)
            # Four decoding, one waiting: the sixth is refused.
            with ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(ask, four_slots, LOOP, {"prompt": "next", "max_tokens": 5})
                while four_slots.metrics()[LOOP]["waiting"] == 0:
                    time.sleep(0.02)
                refused = ask(four_slots, LOOP, {"prompt": "one too many"})
                assert refused.status_code == 429, refused.text
                assert [e["code"] for e in refused.json()["errors"]] == [3040]
                assert "decoding 4 requests and 1 more wait" in refused.json()["errors"][0]["message"]
                replies[0].close()  # one leaves: the waiting request takes its slot
                answered = waiting.result(timeout=60)
            assert answered.status_code == 200, answered.text
            assert answered.json()["result"]["usage"]["completion_tokens"] == 5
            # The three others went on meanwhile, and still do.
            for lines in streams[1:]:
                next_data(lines)
            # The answered request is done once the model's thread has handed on its last item,
            # which its client may read a moment before: the figures settle at three running.
            deadline = time.monotonic() + 30
            while (figures := four_slots.metrics()[LOOP])["running"] != 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert figures["running"] == 3 and figures["cancelled"] == 1
            assert figures["last_cancel"]["pieces_after_cancel"] <= 1
        finally:
            for reply in replies:
                reply.close()
    figures = four_slots.wait_idle(LOOP)
    assert figures["cancelled"] == 4 and figures["completed"] == 1


def test_each_request_is_planned_within_its_slot(four_slots: ServeProcess) -> None:
    """--slot-context 512: a reply asked for more is held to what the slot leaves (as the model's
    own windows would hold it), and a prompt over the slot is refused 413 / 5021."""
    reply = ask(four_slots, LOOP, {"prompt": "hi", "max_tokens": 25000})
    assert reply.status_code == 200, reply.text
    usage = reply.json()["result"]["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 512
    assert usage["completion_tokens"] > 400
    over = ask(four_slots, LOOP, {"prompt": "hi " * 600, "max_tokens": 5})
    assert over.status_code == 413, over.text
    [error] = over.json()["errors"]
    assert error["code"] == 5021
    assert four_slots.metrics()[LOOP]["refused"] == 1


def test_sigterm_ends_every_slot_with_an_error_event_and_exit_0(
    isolated_home: Path, served: list[Served]
) -> None:
    write_catalog(isolated_home, served)
    server = ServeProcess(isolated_home, "--parallel", "2", "-m", LOOP)
    url, headers = server.run_url(LOOP), server.headers
    long = {"prompt": "hi", "stream": True, "max_tokens": 25000}
    rests: list[list[str]] = []
    with httpx.Client(timeout=60) as client, contextlib.ExitStack() as open_replies:
        replies = [
            open_replies.enter_context(client.stream("POST", url, json=long, headers=headers))
            for _ in range(2)
        ]
        streams = [reply.iter_lines() for reply in replies]
        for lines in streams:
            next_data(lines)
        server.process.send_signal(signal.SIGTERM)
        server.wait_for(re.compile("SIGTERM: stopping"))
        server.process.send_signal(signal.SIGTERM)  # the second cuts at once
        for lines, reply in zip(streams, replies, strict=True):
            rests.append([line for line in lines if line.startswith("data:")])
            reply.close()
    assert server.stop() == 0
    for rest in rests:
        assert rest and "[DONE]" not in rest[-1]
        [error] = json.loads(rest[-1].removeprefix("data:"))["errors"]
        assert error["code"] == 3043 and "shutting down" in error["message"]


def test_a_request_that_fails_unexpectedly_leaves_the_other_slots_serving(
    isolated_home: Path, served: list[Served]
) -> None:
    faulty = "@cf/test/faulty"
    write_catalog(isolated_home, [*served, Served(faulty, served[0].model)])
    with ServeProcess(isolated_home, "--parallel", "3", env={FAULT_ENV: faulty}) as server:
        for _ in range(4):  # more than its slots: none stays taken by a failure
            reply = ask(server, faulty, {"prompt": "hi"})
            assert reply.status_code == 500, reply.text
            assert reply.json()["errors"][0]["code"] == 3043
        assert ask(server, TINY, {"prompt": "hi"}).status_code == 200
        assert server.wait_idle(faulty)["failed"] == 4


def test_parallel_and_slot_context_are_refused_out_of_range(isolated_home: Path) -> None:
    from tests.support.cli import run_wai

    for flags, named in ((["--parallel", "0"], "--parallel"), (["--slot-context", "3"], "--slot-context")):
        result = run_wai("serve", *flags)
        assert result.returncode == 2
        assert named in result.stderr and "Traceback" not in result.stderr


def test_the_windows_clients_are_told_are_a_slots(four_slots: ServeProcess) -> None:
    """What the model list says a request may hold is what a request gets (--slot-context 512),
    so a client that plans with it (`wai models --refresh`) is not refused 413."""
    search = httpx.get(
        four_slots.base_url + "/accounts/a/ai/models/search", headers=four_slots.headers
    ).json()
    [loop] = [model for model in search["result"] if model["name"] == LOOP]
    told = {p["property_id"]: int(p["value"]) for p in loop["properties"] if p["property_id"] != "json_mode"}
    assert told == {
        "context_window": 512,
        "max_input_tokens": 512,
        "max_total_tokens": 512,
        "max_output_tokens": 512,
    }
    openai = httpx.get(four_slots.origin + "/v1/models/" + LOOP, headers=four_slots.headers).json()
    assert (openai["context_window"], openai["max_output"], openai["total_context"]) == (512, 512, 512)
    assert f"{LOOP}  (512 in, 512 out, 512 in all)" in four_slots.stderr
    # A prompt as long as the list says is planned within the slot, not refused.
    reply = ask(four_slots, LOOP, {"prompt": "hi " * 120, "max_tokens": 5})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("parallel", ["2", "1"])
def test_the_metrics_give_each_slots_positions_and_the_log_says_once_when_they_are_cut(
    isolated_home: Path, served: list[Served], parallel: str
) -> None:
    """--slot-context over the model's context (400 positions for the tiny model): each slot has
    those 400, /debug/metrics says so, and the log says why once, not once per request."""
    write_catalog(isolated_home, served)
    with ServeProcess(
        isolated_home, "--parallel", parallel, "--slot-context", "100000", "-m", TINY
    ) as server:
        assert server.metrics()[TINY]["slot_context"] == 100000  # at most, until the model is loaded
        for _ in range(2):
            assert ask(server, TINY, {"prompt": "hi"}).status_code == 200
        assert server.wait_idle(TINY)["slot_context"] == 400
        assert server.stderr.count("is over the model's trained context; each slot has 400 positions") == 1


def test_the_metrics_give_the_default_slot_context_until_the_model_says_less(
    isolated_home: Path, served: list[Served]
) -> None:
    write_catalog(isolated_home, served)
    with ServeProcess(isolated_home, "--parallel", "2", "-m", TINY) as server:
        assert server.metrics()[TINY]["slot_context"] == 4096  # the default, until the model is loaded
        assert ask(server, TINY, {"prompt": "hi"}).status_code == 200
        assert server.wait_idle(TINY)["slot_context"] == 400

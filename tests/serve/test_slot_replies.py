"""A reply decoded beside others that ended while its reader was behind: what the reader gets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import cast

import pytest

from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.events import Token
from wai.serve.jobs import Ended, Item, Job, SlotSink
from wai.serve.protocol import Ask
from wai.serve.slots import SlotHost, _Loop
from wai.serve.worker import ModelWorker
from wai.turn.planner import TurnPlanner
from wai.turn_result import TurnInfo, TurnResult

SPEC = ModelSpec(id="@cf/test/reader", context_window=300, max_output=100, total_context=400, remote=False)
SHUTDOWN = "wai serve is shutting down"


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def read_all(loop: asyncio.AbstractEventLoop, job: Job) -> list[Item]:
    """What the reader takes, everything handed to it so far."""
    loop.run_until_complete(asyncio.sleep(0))  # the items handed from the model's thread arrive
    items: list[Item] = []
    while not job._items.empty():
        items.append(loop.run_until_complete(job.next()))
    return items


def _unplanned() -> TurnPlanner:
    raise RuntimeError("no model in this test")


@pytest.mark.parametrize("cut", ["stalled", "server stopping"])
def test_a_reader_behind_when_its_ended_reply_is_cut_is_told_so_and_never_left_waiting(
    loop: asyncio.AbstractEventLoop, cut: str
) -> None:
    said: list[str] = []
    stall_limit = 0.0 if cut == "stalled" else 3600.0
    worker = ModelWorker(
        SPEC, max_queue=0, make_planner=_unplanned, parallel=2, stall_limit=stall_limit, log=said.append
    )
    job = Job(Ask(model=SPEC, messages=(Message("user", "hi"),), max_tokens=100, stream=True), loop)
    worker._state.running.append(job)  # as the model's thread takes it into a slot
    sink = SlotSink(job, worker.stats)
    for _ in range(70):  # 64 go to the reader, the rest wait with the reply's end
        sink.feed(Token("x"))
    info = TurnInfo(SPEC.id, "local", "q8_0", 300, 100, 100)
    worker.conclude(job, TurnResult(info, text="x" * 70, finish_reason="length"), sink.hand)
    slots = _Loop(cast(SlotHost, worker))
    slots._settle(sink)  # decoded whole, its end held for its reader
    first = read_all(loop, job)
    assert len(first) == 64
    if cut == "server stopping":
        worker.cut_running(SHUTDOWN)
    slots._drain()
    rest = read_all(loop, job)
    # Its end says the reply was cut, and no token after a hole makes it look whole.
    reason = "client gone (it took no events for 0 s)" if cut == "stalled" else SHUTDOWN
    assert rest == [Ended(reason)]
    # The figures and the log say what the reader was told.
    figures = worker.snapshot()
    assert (figures["running"], figures["draining"], figures["completed"], figures["cancelled"]) == (
        0,
        0,
        0,
        1,
    )
    stalled = [line for line in said if "took no events" in line]
    assert len(stalled) == (1 if cut == "stalled" else 0)


def test_a_reply_decoded_whole_whose_reader_is_behind_gives_its_place_to_the_next_request(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Two slots, no queue: one reply ended, its reader still behind; a third request is taken, not
    refused 429, and the figures count the ended one apart."""

    worker = ModelWorker(SPEC, max_queue=0, make_planner=_unplanned, parallel=2)
    ask = Ask(model=SPEC, messages=(Message("user", "hi"),), max_tokens=100, stream=True)
    ended, decoding = Job(ask, loop), Job(ask, loop)
    worker._state.running += [ended, decoding]  # as the model's thread takes them into its slots
    sink = SlotSink(ended, worker.stats)
    for _ in range(70):
        sink.hand(Token("x"))
    _Loop(worker)._settle(sink)  # its reply ended, 7 items still held for its reader
    try:
        worker.submit(Job(ask, loop))  # refused 429 while the drained reply counted as decoding
        figures = worker.snapshot()
        assert figures["draining"] == 1 and figures["running"] in (1, 2)  # the third, while it runs
    finally:
        worker.stop_accepting("the test ends")
        worker.join(5)

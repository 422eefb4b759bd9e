"""A reply decoded beside others that ended while its reader was behind: what the reader gets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import cast

import pytest

from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.events import Token
from wai.serve.jobs import Ended, Item, Job, ModelStats, SlotSink
from wai.serve.protocol import Ask
from wai.serve.slots import SlotHost, _Loop
from wai.serve.worker import ModelWorker
from wai.turn.planner import TurnPlanner

SPEC = ModelSpec(id="@cf/test/reader", context_window=300, max_output=100, total_context=400, remote=False)
SHUTDOWN = "wai serve is shutting down"


class _Host:
    """The model's worker as the loop sees it, with no model: only the draining replies run."""

    parallel = 2
    stats = ModelStats()

    def __init__(self, stall_limit: float) -> None:
        self.stall_limit = stall_limit
        self.done: list[Job] = []

    def finished(self, job: Job) -> None:
        self.done.append(job)


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


@pytest.mark.parametrize("cut", ["stalled", "server stopping"])
def test_a_reader_behind_when_its_ended_reply_is_cut_is_told_so_and_never_left_waiting(
    loop: asyncio.AbstractEventLoop, cut: str
) -> None:
    job = Job(Ask(model=SPEC, messages=(Message("user", "hi"),), max_tokens=100, stream=True), loop)
    sink = SlotSink(job, ModelStats())
    for _ in range(70):  # 64 go to the reader, the rest wait with the reply's end
        sink.hand(Token("x"))
    sink.hand(Ended())
    host = _Host(stall_limit=0.0 if cut == "stalled" else 3600.0)
    slots = _Loop(cast(SlotHost, host))
    slots.draining.append(sink)
    first = read_all(loop, job)
    assert len(first) == 64
    if cut == "server stopping":
        job.cancel(SHUTDOWN)
    slots._drain()
    assert host.done == [job]
    rest = read_all(loop, job)
    # Its end says the reply was cut, and no token after a hole makes it look whole.
    reason = "client gone (it took no events for 0 s)" if cut == "stalled" else SHUTDOWN
    assert rest == [Ended(reason)]


def test_a_reply_decoded_whole_whose_reader_is_behind_gives_its_place_to_the_next_request(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Two slots, no queue: one reply ended, its reader still behind; a third request is taken, not
    refused 429, and the figures count the ended one apart."""

    def make_planner() -> TurnPlanner:
        raise RuntimeError("no model in this test")

    worker = ModelWorker(SPEC, max_queue=0, make_planner=make_planner, parallel=2)
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

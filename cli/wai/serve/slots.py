"""Several requests of one model decoded together (`wai serve --parallel N`), continuously.

The model's thread runs one loop: it takes waiting requests into free slots (plans each within its
slot), then decodes one batch (backends/llama_cpp/batched.py): every slot's next token and the
next chunk of each prompt being read; and feeds each reply its step's events. All of it
happens on that one thread, between two batches: on a CPU, llama.cpp's threads take every core
while a batch is decoded, and work done beside them (a thread per reply, say) slows the batch
more than it saves.

A reply never waits for its reader: what the reader has no room for is held by its SlotSink, and
the slot sits out the steps until the reader catches up. A reader behind for the stall limit is
cut, as is a client that leaves: its slot is free before the next step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from wai.catalog.entries import ModelSpec
from wai.errors import WaiError
from wai.serve.jobs import Cut, Item, Job, ModelStats, SlotSink

if TYPE_CHECKING:
    from wai.backends.llama_cpp.batched import SlotDecoder, Stepped
    from wai.turn.planner import PlannedTurn, TurnPlanner
    from wai.turn.stream import TurnStream
    from wai.turn_result import TurnResult

# How long the loop sleeps when every reply waits for its reader and no request waits.
_READERS_BEHIND_PAUSE = 0.01


def within_slot(spec: ModelSpec, positions: int) -> ModelSpec:
    """The model's windows as one slot of `positions` holds them."""
    return dataclasses.replace(
        spec,
        context_window=min(spec.context_window, positions),
        max_output=min(spec.max_output, positions),
        total_context=min(spec.total_context, positions),
    )


class SlotHost(Protocol):
    """What the loop needs of the model's worker: its queue, its planning and its reports."""

    parallel: int
    stall_limit: float
    stats: ModelStats

    def take(self, room: int, *, wait: float | None) -> list[Job] | None:
        """Up to `room` waiting jobs, now running, waiting for one up to `wait` seconds (None: until
        one comes); None when the server stops and none is left."""

    def slot_positions(self) -> int: ...

    def decoder_for(self, planner: TurnPlanner, positions: int) -> SlotDecoder[Job]: ...

    def plan(self, job: Job, positions: int | None) -> tuple[TurnPlanner, PlannedTurn] | None: ...

    def conclude(self, job: Job, result: TurnResult | None, hand: Callable[[Item], object]) -> None: ...

    def unexpected(self, job: Job, error: Exception, hand: Callable[[Item], object]) -> None: ...

    def finished(self, job: Job) -> None: ...

    def released(self, job: Job) -> None:
        """The job's reply was decoded whole, but its reader is behind: it holds no slot now."""

    def cut_after_its_end(self, job: Job, end: Item) -> None:
        """The job's reply, decoded whole (its last item `end`), was cut before its reader had it."""


@dataclass(slots=True)
class _Reply:
    turn: TurnStream
    sink: SlotSink


def serve_together(host: SlotHost) -> None:
    """The model's thread, until the server stops and nothing is left to decode."""
    _Loop(host).run()


class _Loop:
    def __init__(self, host: SlotHost) -> None:
        self.host = host
        self.decoder: SlotDecoder[Job] | None = None
        self.replies: dict[Job, _Reply] = {}  # under way, each in a slot
        self.draining: list[SlotSink] = []  # ended, their last items waiting for their readers

    def run(self) -> None:
        try:
            while True:
                self._cut_the_gone()
                self._drain()
                paused = {job for job, reply in self.replies.items() if not reply.sink.flush()}
                stepping = len(paused) < len(self.replies)
                if stepping:
                    wait: float | None = 0.0
                elif self.replies or self.draining:
                    wait = _READERS_BEHIND_PAUSE
                else:
                    wait = None
                taken = self.host.take(self.host.parallel - len(self.replies), wait=wait)
                if taken is None:
                    return
                for job in taken:
                    self._admit(job)
                if any(job not in paused for job in self.replies):
                    self._step(paused)
        finally:
            if self.decoder is not None:
                self.decoder.close()

    def _admit(self, job: Job) -> None:
        """Plan the job within a slot and give it the slot: its prompt is read in the next steps."""
        host = self.host
        try:
            positions = self.decoder.per_slot if self.decoder is not None else host.slot_positions()
            planned = host.plan(job, positions)
        except Exception as error:  # one request's bug must not stop the model
            host.unexpected(job, error, job.put)
            host.finished(job)
            return
        if planned is None:
            host.finished(job)
            return
        planner, turn = planned
        sink = SlotSink(job, host.stats)
        reply = _Reply(planner.stream_into(turn, sink), sink)
        try:
            reply.turn.start()
            if self.decoder is None:
                self.decoder = host.decoder_for(planner, positions)
            self.decoder.admit(job, turn.request)
        except WaiError as error:
            host.conclude(job, reply.turn.failed(error), sink.hand)
        except Exception as error:  # one request's bug must not stop the model
            host.unexpected(job, error, sink.hand)
        else:
            self.replies[job] = reply
            return
        self._settle(sink)

    def _step(self, paused: set[Job]) -> None:
        assert self.decoder is not None  # a reply under way is in the decoder
        try:
            stepped = self.decoder.step(skip=paused)
        except Exception as error:  # the context is in doubt: every reply ends, a new one is made
            for job, reply in self.replies.items():
                if isinstance(error, WaiError):
                    self.host.conclude(job, reply.turn.failed(error), reply.sink.hand)
                else:
                    self.host.unexpected(job, error, reply.sink.hand)
                self._settle(reply.sink)
            self.replies.clear()
            self.decoder.close()
            self.decoder = None
            return
        for each in stepped:
            self._take(each)

    def _take(self, stepped: Stepped[Job]) -> None:
        """Feed a reply its new events; settle it when it ended."""
        job = stepped.key
        reply = self.replies[job]
        try:
            for event in stepped.events:
                reply.turn.feed(event)
        except WaiError as error:  # its client left
            if not stepped.ended:
                self._release(job)
            del self.replies[job]
            self.host.conclude(job, reply.turn.failed(error), reply.sink.hand)
            self._settle(reply.sink)
            return
        if stepped.ended:
            del self.replies[job]
            self.host.conclude(job, reply.turn.end(), reply.sink.hand)
            self._settle(reply.sink)

    def _cut_the_gone(self) -> None:
        """Free the slots of clients that left or that read nothing for the stall limit."""
        for job, reply in list(self.replies.items()):
            self._cut_if_stalled(reply.sink)
            if job.cancelled:
                in_prompt = self.decoder is not None and self.decoder.reading(job)
                self._release(job)
                del self.replies[job]
                reply.sink.held.clear()
                # Cut while its prompt was read: no result, nothing was said (as alone).
                result = None if in_prompt else reply.turn.failed(Cut(job.cancel_reason or "cancelled"))
                self.host.conclude(job, result, job.put)
                self.host.finished(job)

    def _drain(self) -> None:
        still: list[SlotSink] = []
        for sink in self.draining:
            self._cut_if_stalled(sink)
            if sink.settle():
                if sink.cut_end is not None:
                    self.host.cut_after_its_end(sink.job, sink.cut_end)
                self.host.finished(sink.job)
            else:
                still.append(sink)
        self.draining = still

    def _cut_if_stalled(self, sink: SlotSink) -> None:
        behind, limit = sink.behind_since, self.host.stall_limit
        if not sink.job.cancelled and behind is not None and time.monotonic() - behind >= limit:
            sink.job.cut_as_stalled(limit)

    def _settle(self, sink: SlotSink) -> None:
        """A reply that ended: done once its reader has every item, else left to drain."""
        if sink.settle():
            self.host.finished(sink.job)
        else:
            self.host.released(sink.job)
            self.draining.append(sink)

    def _release(self, job: Job) -> None:
        if self.decoder is not None:
            self.decoder.drop(job)

"""Runs the records of `wai batch` on N workers over one turn planner, and hands each outcome back,
in the order they end, to the one thread that writes them (the caller's).

Workers take the next record as they free up; a record's failure is its own line. What no record
after it could escape stops the batch instead: the daily allowance used up, a configuration the
server refused (the credentials, a plan the model needs). Then no worker takes another record,
and the ones under way end (answered, or failed with the same refusal) before the caller is told.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from wai.commands.batch.records import Record, RecordError
from wai.errors import AllowanceSpent, ConfigError, WaiError
from wai.events import Event
from wai.sampling import Sampling
from wai.tokens.counters import TokenCounter
from wai.turn.planner import PlannedTurn, TurnAsk, TurnPlanner
from wai.turn.planner import Target as TurnTarget
from wai.turn_result import TurnInfo, TurnResult


@dataclass(frozen=True, slots=True)
class Outcome:
    """One record's end: its result, or why it never ran (`error` alone); `turn`: what was played."""

    record: Record
    result: TurnResult | None
    error: WaiError | None
    turn: PlannedTurn | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def stops_batch(self) -> bool:
        """A refusal that every later record would meet as well."""
        return isinstance(self.error, AllowanceSpent | ConfigError)


class RecordFailure(WaiError):
    """A record that makes no prompt (a field its template needs, a bad `messages`)."""

    code = "record"


class QuietSink:
    """The sink of a batch's turns: their results are what is kept, nothing is shown as it comes."""

    tells_output_cap = True
    shows_waiting = False

    def start(self, info: TurnInfo) -> None:
        pass

    def feed(self, event: Event) -> None:
        pass

    def finish(self, result: TurnResult) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Prepared:
    """The records planned before any is sent: those that could not be (their outcomes) and the
    turns of the rest, in input order."""

    failed: list[Outcome]
    planned: list[tuple[Record, PlannedTurn]]


def seeded(sampling: Sampling, index: int) -> Sampling:
    """Record `index`'s sampling: with a seed S, its own seed S + index, so that what a record gets
    depends neither on -j nor on which worker ran it when."""
    return sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + index)


class BatchRunner:
    """Plays records on `jobs` workers. `ask_for` makes a record's TurnAsk (a RecordError when the
    record makes no prompt)."""

    def __init__(
        self,
        planner: TurnPlanner,
        target: TurnTarget,
        counter: TokenCounter,
        ask_for: Callable[[Record], TurnAsk],
        *,
        jobs: int,
        together: bool = False,
    ) -> None:
        """`together`: the backend decodes several requests at once in one batch (llama.cpp): the
        records are planned here and decoded `jobs` at a time on this thread, no worker threads."""
        self._planner = planner
        self._target = target
        self._counter = counter
        self._ask_for = ask_for
        self._jobs = max(1, jobs)
        self._together = together
        self._planning = threading.Lock()  # a counter may load its vocabulary on first use
        self.stopped_by: WaiError | None = None

    def prepare(self, records: Sequence[Record]) -> Prepared:
        """Plan every record (counted within its windows, as `wai ask` would), before any is sent:
        a batch's cost is known, and checked, before it starts."""
        failed: list[Outcome] = []
        planned: list[tuple[Record, PlannedTurn]] = []
        for record in records:
            turn = self.plan(record)
            if isinstance(turn, Outcome):
                failed.append(turn)
            else:
                planned.append((record, turn))
        return Prepared(failed, planned)

    def run(self, prepared: Prepared) -> Iterator[Outcome]:
        """Each record's outcome as it ends, those that could not be planned first. With one job
        the records run on this thread (a local model decodes on the thread that loaded it, and a
        Ctrl-C reaches it); with more, on worker threads, and a Ctrl-C here ends the iteration
        (the workers are abandoned: nothing more is written)."""
        yield from prepared.failed
        if self._together and self._jobs > 1:
            yield from self._decoded_together(prepared.planned)
            return
        if self._jobs == 1:
            for record, turn in prepared.planned:
                if self.stopped_by is not None:
                    return
                outcome = self.play(record, turn)
                if outcome.result is not None and outcome.result.interrupted:
                    raise KeyboardInterrupt
                self._note(outcome)
                yield outcome
            return
        yield from self._threaded(prepared.planned)

    def _threaded(self, planned: Sequence[tuple[Record, PlannedTurn]]) -> Iterator[Outcome]:
        pending: queue.SimpleQueue[tuple[Record, PlannedTurn]] = queue.SimpleQueue()
        for each in planned:
            pending.put(each)
        ended: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        stop = threading.Event()

        def work() -> None:
            try:
                while not stop.is_set():
                    try:
                        record, turn = pending.get_nowait()
                    except queue.Empty:
                        return
                    outcome = self.play(record, turn)
                    if outcome.stops_batch:
                        stop.set()
                    ended.put(outcome)
            finally:
                ended.put(None)  # this worker is done

        workers = [
            threading.Thread(target=work, name=f"wai-batch-{n}", daemon=True)
            for n in range(min(self._jobs, len(planned)))
        ]
        for worker in workers:
            worker.start()
        running = len(workers)
        try:
            while running:
                outcome = ended.get()
                if outcome is None:
                    running -= 1
                    continue
                self._note(outcome)
                yield outcome
        finally:
            stop.set()  # a Ctrl-C, or the caller gone: no worker takes another record

    @property
    def planner(self) -> TurnPlanner:
        return self._planner

    def _note(self, outcome: Outcome) -> None:
        if outcome.stops_batch and self.stopped_by is None:
            self.stopped_by = outcome.error

    def play(self, record: Record, turn: PlannedTurn) -> Outcome:
        """Play one planned record; whatever goes wrong is the record's outcome."""
        result = self._planner.run(turn, QuietSink())
        return Outcome(record, result, result.error, turn)

    def plan(self, record: Record) -> PlannedTurn | Outcome:
        """The record's planned turn, or its outcome when it cannot be planned."""
        try:
            try:
                ask = self._ask_for(record)
            except RecordError as error:
                raise RecordFailure(str(error)) from None
            with self._planning:
                return self._planner.plan(ask, self._target, counter=self._counter)
        except WaiError as error:
            return Outcome(record, None, error)

    def _decoded_together(self, planned: Sequence[tuple[Record, PlannedTurn]]) -> Iterator[Outcome]:
        """The planned records decoded `jobs` at a time in the backend's batches; each outcome as
        its record ends."""
        backend = self._planner.backends.get(self._target.backend)
        keyed = [(number, turn.request) for number, (_, turn) in enumerate(planned)]
        for number, got in backend.stream_together(keyed, self._jobs):
            record, turn = planned[number]
            if isinstance(got, WaiError):
                outcome = Outcome(record, None, got, turn)
            else:
                result = self._planner.run(turn, QuietSink(), events=iter(got))
                outcome = Outcome(record, result, result.error, turn)
            self._note(outcome)
            yield outcome

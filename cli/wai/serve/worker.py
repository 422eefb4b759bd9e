"""One thread per model runs its requests, one at a time or `parallel` at once; each request's events
reach the event loop.

llama.cpp decodes in blocking C code, so each served model gets a thread of its own (and its own
turn planner, whose local backend keeps the model loaded once the first request has loaded it). A
request is a Job: the thread plans it with the turn planner (the window policy, counting with the
loaded model), then pulls the backend's events one by one and hands each to the event loop. Between two
pulls it looks at the job's cancel flag, so a client that goes away stops its generation after
the piece of text being decoded, and the next job starts.

With `parallel` N above 1 the model keeps N slots decoded together (continuous batching): the
model's thread runs serve/slots.py's loop instead, on the same queue and the same planning.

At most N + max_queue jobs per model are admitted (N decoding, the rest waiting); another is
refused at once with 429 / 3040, as Workers AI does when it is out of capacity.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wai.catalog.entries import ModelSpec
from wai.errors import SchemaMismatch, UsageError, WaiError, WindowError
from wai.events import Event
from wai.serve.failures import log_unexpected, one_line
from wai.serve.jobs import Accepted, Cut, Ended, Failed, Item, Job, JobSink, ModelStats
from wai.serve.protocol import INTERNAL_ERROR, OUT_OF_CAPACITY, WINDOW_EXCEEDED, ApiFailure
from wai.serve.slots import serve_together, within_slot
from wai.terminal.safe_text import log_safe
from wai.turn.planner import PlannedTurn, Target, TurnAsk, TurnPlanner
from wai.turn_result import TurnResult
from wai.wording import counted

if TYPE_CHECKING:
    from wai.backends.llama_cpp.batched import SlotDecoder

# Set to a served model's id, every request to it fails as no code expects: how the tests check that
# a model's thread survives such a failure (every real cause found so far has been fixed).
FAULT_ENV = "WAI_SERVE_FAULT"
# How long the model waits, its backlog full, for a client that takes no events before cutting it.
STALL_LIMIT = 30.0
# Positions of each slot with --parallel above 1 unless --slot-context says otherwise (as
# llama-server's default context), within the model's trained context.
DEFAULT_SLOT_CONTEXT = 4096


@dataclass(slots=True)
class _State:
    waiting: collections.deque[Job] = field(default_factory=collections.deque)
    running: list[Job] = field(default_factory=list)
    # Replies decoded whole, in no slot, their last items waiting for a reader who is behind.
    draining: list[Job] = field(default_factory=list)
    stopping: bool = False


class ModelWorker:
    """The thread that runs one model's jobs in order, and the queue in front of it."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        max_queue: int,
        make_planner: Callable[[], TurnPlanner],
        log: Callable[[str], None] = lambda _line: None,
        debug: bool = False,
        stall_limit: float = STALL_LIMIT,
        parallel: int = 1,
        slot_context: int | None = None,
    ) -> None:
        self.spec = spec
        self.max_queue = max_queue
        self.parallel = parallel
        self.slot_context = slot_context
        self._positions: int | None = None  # each slot's, once the model's trained context is known
        self.stall_limit = stall_limit
        self._log = log
        self._debug = debug
        self.stats = ModelStats()
        self.loaded = False
        self._make_planner = make_planner
        self._planner: TurnPlanner | None = None
        self._state = _State()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, object]:
        with self._wake:
            running, waiting = len(self._state.running), len(self._state.waiting)
            draining = len(self._state.draining)
        stats = self.stats
        return {
            "loaded": self.loaded,
            "running": running,
            "waiting": waiting,
            "draining": draining,
            "parallel": self.parallel,
            "slot_context": self._positions or self.slot_context or self._default_positions(),
            "max_queue": self.max_queue,
            "requests": stats.requests,
            "refused": stats.refused,
            "completed": stats.completed,
            "cancelled": stats.cancelled,
            "failed": stats.failed,
            "tokens": stats.tokens,
            "last_cancel": stats.last_cancel,
        }

    def submit(self, job: Job) -> None:
        """Admit the job, or raise ApiFailure 429 / 3040 at once when the queue is full."""
        with self._wake:
            state = self._state
            if state.stopping:
                raise ApiFailure(503, OUT_OF_CAPACITY, "wai serve is shutting down; try again later")
            admitted = len(state.waiting) + len(state.running)
            if admitted >= self.parallel + self.max_queue or (
                job.ask.reject_if_busy and admitted >= self.parallel
            ):
                self.stats.refused += 1
                # As the client sees it: a request the model's thread has not picked up yet, while
                # a slot is free, is decoded next, not one of those waiting behind the slots.
                running = min(admitted, self.parallel)
                decoding = "a request" if running <= 1 else f"{running} requests"
                raise ApiFailure(
                    429,
                    OUT_OF_CAPACITY,
                    f"Capacity temporarily exceeded: {self.spec.id} is decoding {decoding} and "
                    f"{admitted - running} more wait (at most {self.max_queue}); try again shortly",
                )
            self.stats.requests += 1
            state.waiting.append(job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name=f"wai-serve {self.spec.id}", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def cancel(self, job: Job, reason: str) -> None:
        """Stop a job: one still waiting leaves the queue at once; a running one stops after
        the piece of text being decoded."""
        with self._wake:
            waiting = job in self._state.waiting
            if waiting:
                self._state.waiting.remove(job)
        job.cancel(reason)
        if waiting:
            self._count_cancel(job)
            job.done = True
            job.put(Ended(reason))

    def stop_accepting(self, reason: str) -> None:
        """Refuse new jobs, and end those still waiting; the running one goes on."""
        with self._wake:
            self._state.stopping = True
            waiting = list(self._state.waiting)
            self._wake.notify()
        for job in waiting:
            self.cancel(job, reason)

    def cut_running(self, reason: str) -> None:
        with self._wake:
            running = self._state.running + self._state.draining
        for job in running:
            self.cancel(job, reason)

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        if self._planner is not None and (self._thread is None or not self._thread.is_alive()):
            self._planner.close()

    @property
    def idle(self) -> bool:
        with self._wake:
            return not (self._state.running or self._state.waiting or self._state.draining)

    # The thread

    def _serve(self) -> None:
        if self.parallel > 1:
            serve_together(self)
            return
        while True:
            with self._wake:
                while not self._state.waiting and not self._state.stopping:
                    self._wake.wait()
                if not self._state.waiting:
                    return  # stopping, and nothing left
                job = self._state.waiting.popleft()
                self._state.running.append(job)
            try:
                self._run(job)
            except Exception as error:  # one request's bug must not stop the model
                self.unexpected(job, error, job.put)
            finally:
                self.finished(job)

    def finished(self, job: Job) -> None:
        job.done = True
        with self._wake:
            if job in self._state.draining:
                self._state.draining.remove(job)
            else:
                self._state.running.remove(job)
            self._wake.notify()

    def released(self, job: Job) -> None:
        """The job's reply was decoded whole, but its reader is behind: it holds no slot now, and
        counts no more among those decoding (its place goes to the next request)."""
        with self._wake:
            self._state.running.remove(job)
            self._state.draining.append(job)

    def _run(self, job: Job) -> None:
        planned = self.plan(job, None if self.slot_context is None else self.slot_positions())
        if planned is not None:
            planner, turn = planned
            self._generate(job, planner, turn, _stoppable(planner, turn, job))

    def plan(self, job: Job, positions: int | None) -> tuple[TurnPlanner, PlannedTurn] | None:
        """The job's turn, planned within the model's windows (and within a slot of `positions`
        when there is one), its Accepted handed on; None when it ends here (refused, failed, or its
        client gone), its last item handed on."""
        spec, ask = self.spec, job.ask
        if os.environ.get(FAULT_ENV) == spec.id:
            raise RuntimeError(f"{FAULT_ENV} is set to {spec.id}")
        path = spec.gguf_path()
        if path is None or not path.is_file():
            # Where the server keeps its files is none of its clients' business: the log has it.
            self.stats.failed += 1
            self._log(f"{spec.id}: its model file {path} is gone")
            gone = f"{spec.id}'s model file is gone from this server; its administrator can restore it"
            job.put(Failed(ApiFailure(500, INTERNAL_ERROR, gone)))
            return None
        try:
            planner, target = self.planner(), Target(spec, "local")
            counter = planner.counter(target)  # the loaded model's own (it loads it)
            self.loaded = True
            turn = planner.plan(
                TurnAsk(
                    ask.messages[-1].content,
                    ask.messages,
                    max_tokens=ask.max_tokens,
                    sampling=ask.sampling,
                    reasoning_effort=ask.reasoning_effort,
                    raw=ask.raw,
                    schema=ask.schema,
                ),
                target,
                counter=counter,
                # The window policy exactly as the client applies it: a client speaks to this server
                # as to Workers AI, which plans with the catalog's windows (within its slot here).
                windows=spec if positions is None else within_slot(spec, positions),
            )
            backend = planner.backends.get("local")
            precision = backend.precision(turn.request)
        except WaiError as error:
            if isinstance(error, WindowError | UsageError):
                self.stats.refused += 1
            else:
                self._count_failure(error)
            job.put(Failed(_failure(error, path)))
            return None
        if not job.put(Accepted(turn.plan, precision), self.stall_limit):
            self._count_cancel(job)
            job.put(Ended(job.cancel_reason))
            return None
        return planner, turn

    def planner(self) -> TurnPlanner:
        if self._planner is None:
            self._planner = self._make_planner()
        return self._planner

    # Several requests decoded together (--parallel; serve/slots.py runs them)

    def take(self, room: int, *, wait: float | None) -> list[Job] | None:
        with self._wake:
            state = self._state
            if wait is None:
                while not state.waiting and not state.stopping:
                    self._wake.wait()
                if not state.waiting:
                    return None  # stopping, and nothing left
            elif wait > 0 and not state.waiting:
                self._wake.wait(wait)
            taken = [state.waiting.popleft() for _ in range(min(room, len(state.waiting)))]
            state.running += taken
            return taken

    def decoder_for(self, planner: TurnPlanner, positions: int) -> SlotDecoder[Job]:
        from wai.backends.llama_cpp.backend import LlamaCpp

        backend = planner.backends.get("local")
        assert isinstance(backend, LlamaCpp)  # wai serve serves local models
        return backend.slot_decoder(
            self.spec,
            self.parallel,
            positions,
            hint="serve fewer requests at once (--parallel) or give each fewer positions (--slot-context)",
        )

    def slot_positions(self) -> int:
        """Positions of each slot: --slot-context, else DEFAULT_SLOT_CONTEXT, within the file's
        trained context (the planner loads the model to read it once)."""
        if self._positions is not None:
            return self._positions
        trained = self.planner().windows(Target(self.spec, "local")).total_context
        if self.slot_context is not None and self.slot_context > trained:
            self._log(
                f"{self.spec.id}: --slot-context {self.slot_context} is over the model's trained "
                f"context; each slot has {trained} positions"
            )
        self._positions = min(self.slot_context or DEFAULT_SLOT_CONTEXT, trained)
        return self._positions

    def _default_positions(self) -> int | None:
        return DEFAULT_SLOT_CONTEXT if self.parallel > 1 else None

    def _generate(
        self, job: Job, planner: TurnPlanner, turn: PlannedTurn, events: Iterator[Event] | None
    ) -> None:
        from wai.llama.native import DecodeStopped

        sink = JobSink(job, self.stats, self.stall_limit)
        try:
            result = planner.run(turn, sink, events=events)
        except DecodeStopped:  # stopped while the prompt was read: no result, nothing was said
            result = None
        self.conclude(job, result, job.put)

    def conclude(self, job: Job, result: TurnResult | None, hand: Callable[[Item], object]) -> None:
        """Count how the job's turn ended and `hand` its last item on: Ended, or Failed. No
        result: it was stopped while its prompt was read."""
        if (
            result is not None
            and isinstance(result.error, SchemaMismatch)
            and result.finish_reason == "length"
        ):
            # Held by the grammar but cut by max_tokens: the client is told so by finish_reason
            # length, as OpenAI's and Workers AI's own servers tell it.
            result.error = None
        if result is not None and result.error is not None and not isinstance(result.error, Cut):
            self._count_failure(result.error)
            hand(Failed(_failure(result.error, self.spec.gguf_path())))
            return
        if result is None or result.error is not None:
            job.cut_in_prompt = job.pieces == 0
            self._count_cancel(job)
            self._say_stalled(job)
            hand(Ended(job.cancel_reason or "cancelled"))
            return
        self.stats.completed += 1
        hand(Ended(result=result))

    def unexpected(self, job: Job, error: Exception, hand: Callable[[Item], object]) -> None:
        """A failure no part of wai expected: this job gets a 500, the thread serves the next one."""
        self.stats.failed += 1
        log_unexpected(self._log, self._debug, f"{self.spec.id}: unexpected error", error)
        message = f"wai serve could not run the model: {one_line(error)}"
        hand(Failed(ApiFailure(500, INTERNAL_ERROR, message)))

    def cut_after_its_end(self, job: Job, end: Item) -> None:
        """A reply decoded whole but cut before its reader had it all: the figures and the log
        say it was cut, as its reader was told, not that it completed."""
        if not (isinstance(end, Ended) and end.cut is None):
            return  # a failure, or a cut, was counted as such
        self.stats.completed -= 1
        self._count_cancel(job)
        self._say_stalled(job)

    def _say_stalled(self, job: Job) -> None:
        if job.stalled:
            self._log(
                f"{self.spec.id}: a client took no events for {self.stall_limit:g} s: its reply was "
                f"cut after {counted(job.pieces, 'token')}, and the model serves the next request"
            )

    def _count_failure(self, error: WaiError) -> None:
        # The client is told; so is whoever runs the server, who can act on it (--parallel too
        # high for the memory, a broken model file).
        self.stats.failed += 1
        self._log(f"{self.spec.id}: a request failed: {log_safe(' '.join(str(error).split()))}")

    def _count_cancel(self, job: Job) -> None:
        self.stats.cancelled += 1
        self.stats.last_cancel = {
            "reason": job.cancel_reason,
            "pieces": job.pieces,
            "pieces_after_cancel": job.pieces_after_cancel,
            "in_prompt": job.cut_in_prompt,
            "max_tokens": job.ask.max_tokens,
        }


def _failure(error: WaiError, path: Path | None) -> ApiFailure:
    # A message may name the model's file: clients get its name, never the folder it lies in.
    def shown(text: str) -> str:
        return text.replace(str(path), path.name) if path is not None else text

    if isinstance(error, WindowError):
        # The message without the client's hint: its options (--fit, --max-tokens) are not the caller's.
        return ApiFailure(413, WINDOW_EXCEEDED, f"Input too long: {shown(error.message)}")
    if isinstance(error, UsageError):  # a chat template that refuses the conversation, say
        return ApiFailure(400, 5004, shown(str(error)))
    return ApiFailure(500, INTERNAL_ERROR, f"wai serve could not run the model: {shown(str(error))}")


def _stoppable(planner: TurnPlanner, turn: PlannedTurn, job: Job) -> Iterator[Event] | None:
    """The turn's events on llama.cpp, asked between two steps of the prompt's decoding whether the
    job was cancelled, so a long prompt stops within a batch; None elsewhere (the usual stream)."""
    from wai.backends.llama_cpp.backend import LlamaCpp

    backend = planner.backends.get(turn.target.backend)
    if not isinstance(backend, LlamaCpp):
        return None
    return backend.stream(turn.request, should_stop=lambda: job.cancelled)


class Pool:
    """The workers of every served model, created when the server starts, threads on first use."""

    def __init__(
        self,
        served: dict[str, ModelSpec],
        *,
        max_queue: int,
        make_planner: Callable[[], TurnPlanner],
        log: Callable[[str], None] = lambda _line: None,
        debug: bool = False,
        stall_limit: float = STALL_LIMIT,
        parallel: int = 1,
        slot_context: int | None = None,
    ) -> None:
        self.served = served
        self.workers = {
            model_id: ModelWorker(
                spec,
                max_queue=max_queue,
                make_planner=make_planner,
                log=log,
                debug=debug,
                stall_limit=stall_limit,
                parallel=parallel,
                slot_context=slot_context,
            )
            for model_id, spec in served.items()
        }

    def busy(self) -> bool:
        return not all(worker.idle for worker in self.workers.values())

    def stop_accepting(self, reason: str) -> None:
        for worker in self.workers.values():
            worker.stop_accepting(reason)

    def cut_running(self, reason: str) -> None:
        for worker in self.workers.values():
            worker.cut_running(reason)

    def close(self, timeout: float = 5.0) -> None:
        """Stop everything and free the models (after the server has stopped)."""
        self.stop_accepting("wai serve is shutting down")
        self.cut_running("wai serve is shutting down")
        for worker in self.workers.values():
            worker.join(timeout)

    def snapshot(self) -> dict[str, object]:
        return {"models": {model_id: w.snapshot() for model_id, w in self.workers.items()}}

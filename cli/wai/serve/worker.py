"""One thread per model runs its requests, one at a time or `parallel` at once; each request's events
reach the event loop.

llama.cpp decodes in blocking C code, so each served model gets a thread of its own (and its own
turn planner, whose local backend keeps the model loaded once the first request has loaded it). A
request is a Job: the thread plans it with the turn planner (the window policy, counting with the
loaded model), then pulls the backend's events one by one and hands each to the event loop. Between two
pulls it looks at the job's cancel flag, so a client that goes away stops its generation after
the piece of text being decoded, and the next job starts.

With `parallel` N above 1 the model keeps N slots decoded together (continuous batching, see
backends/llama_cpp/batched.py): the model's thread plans each request and reads its prompt into a
free slot, then decodes one token of every slot per step, handing each job its step's events; a
thread per job turns them into its turn (the same turn planner's run as above), so a slow reader
never holds the other slots back. A cancelled job leaves its slot before the next step.

At most N + max_queue jobs per model are admitted (N decoding, the rest waiting); another is
refused at once with 429 / 3040, as Workers AI does when it is out of capacity.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wai.catalog.entries import ModelSpec
from wai.errors import SchemaMismatch, UsageError, WaiError, WindowError
from wai.events import Event, PromptRead, Token
from wai.serve.failures import log_unexpected, one_line
from wai.serve.protocol import INTERNAL_ERROR, OUT_OF_CAPACITY, WINDOW_EXCEEDED, ApiFailure, Ask
from wai.tokens.budget import Plan
from wai.turn.planner import PlannedTurn, Target, TurnAsk, TurnPlanner
from wai.turn_result import TurnInfo, TurnResult
from wai.wording import counted

if TYPE_CHECKING:
    from wai.backends.llama_cpp.batched import SlotDecoder, Stepped

# Set to a served model's id, every request to it fails as no code expects: how the tests check that
# a model's thread survives such a failure (every real cause found so far has been fixed).
FAULT_ENV = "WAI_SERVE_FAULT"
# Events a job may hold for a slow reader before the model waits for it.
_BACKLOG = 64
# How long the model waits, its backlog full, for a client that takes no events before cutting it.
STALL_LIMIT = 30.0
# Positions of each slot with --parallel above 1 unless --slot-context says otherwise (as
# llama-server's default context), within the model's trained context.
DEFAULT_SLOT_CONTEXT = 4096


@dataclass(frozen=True, slots=True)
class Accepted:
    """The request fits the windows; decoding begins. `precision` is the file's (q8_0, f16)."""

    plan: Plan
    precision: str | None


@dataclass(frozen=True, slots=True)
class Failed:
    failure: ApiFailure


@dataclass(frozen=True, slots=True)
class Ended:
    """No more items; `cut` says why the reply stopped early (None when it ran to its end), and
    `result` is the turn's when it ran to its end."""

    cut: str | None = None
    result: TurnResult | None = None


Item = Accepted | Failed | Ended | Event


class Job:
    """One request on its way through a model's thread, and its bridge to the event loop."""

    def __init__(self, ask: Ask, loop: asyncio.AbstractEventLoop) -> None:
        self.ask = ask
        self._loop = loop
        self._items: asyncio.Queue[Item] = asyncio.Queue()
        self._room = threading.Semaphore(_BACKLOG)
        self._cancelled = threading.Event()
        self.cancel_reason: str | None = None
        self.pieces = 0  # pieces of text the backend produced for this job
        self.pieces_at_cancel: int | None = None
        self.stalled = False
        self.cut_in_prompt = False  # cancelled while the model read the prompt, before any token
        self.done = False

    # The event loop's side

    async def next(self) -> Item:
        item = await self._items.get()
        if not isinstance(item, Ended | Failed):
            self._room.release()
        return item

    def cancel(self, reason: str) -> None:
        """Stop this job (from any thread): the model's thread drops it after the piece in flight."""
        if self.done or self._cancelled.is_set():
            return
        self.cancel_reason = reason
        self.pieces_at_cancel = self.pieces
        self._cancelled.set()
        self._room.release()  # wakes a thread waiting for a slow reader

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def pieces_after_cancel(self) -> int | None:
        """Pieces produced after the cancel was asked for: what "stops within a token" measures."""
        return None if self.pieces_at_cancel is None else self.pieces - self.pieces_at_cancel

    # The model's thread's side

    def put(self, item: Item, patience: float | None = None) -> bool:
        """Hand an item to the event loop, waiting while the reader is behind; False once cancelled.

        A reader that takes nothing for `patience` seconds while the backlog is full is taken for
        gone (a client that stopped reading but keeps its connection): the job is cancelled."""
        if not isinstance(item, Ended | Failed):
            if not self._room.acquire(timeout=patience):
                self.stalled = True
                self.cancel(f"client gone (it took no events for {patience:g} s)")
                return False
            if self.cancelled:
                return False
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, item)
        except RuntimeError:  # the event loop is gone: the server is stopping
            self._cancelled.set()
            return False
        return True


@dataclass(slots=True)
class ModelStats:
    requests: int = 0
    refused: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    tokens: int = 0
    last_cancel: dict[str, object] | None = None


@dataclass(slots=True)
class _State:
    waiting: collections.deque[Job] = field(default_factory=collections.deque)
    running: list[Job] = field(default_factory=list)
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
        stats = self.stats
        return {
            "loaded": self.loaded,
            "running": running,
            "waiting": waiting,
            "parallel": self.parallel,
            "slot_context": self.slot_context,
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
                decoding = "a request" if len(state.running) <= 1 else f"{len(state.running)} requests"
                raise ApiFailure(
                    429,
                    OUT_OF_CAPACITY,
                    f"Capacity temporarily exceeded: {self.spec.id} is decoding {decoding} and "
                    f"{len(state.waiting)} more wait (at most {self.max_queue}); try again shortly",
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
            running = list(self._state.running)
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
            return not self._state.running and not self._state.waiting

    # The thread

    def _serve(self) -> None:
        if self.parallel > 1:
            self._serve_together()
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
                self._unexpected(job, error)
            finally:
                self._finished(job)

    def _finished(self, job: Job) -> None:
        job.done = True
        with self._wake:
            self._state.running.remove(job)
            self._wake.notify()

    def _run(self, job: Job) -> None:
        planned = self._plan(job, self.slot_context)
        if planned is not None:
            planner, turn = planned
            self._generate(job, planner, turn, _stoppable(planner, turn, job))

    def _plan(self, job: Job, slot: int | None = None) -> tuple[TurnPlanner, PlannedTurn] | None:
        """The job's turn, planned within the model's windows (and within a slot of `slot`
        positions when there is one), its Accepted handed on; None when it ends here (refused,
        failed, or its client gone), its last item handed on."""
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
                windows=spec if slot is None else within_slot(spec, slot),
            )
            backend = planner.backends.get("local")
            precision = backend.precision(turn.request)
        except WaiError as error:
            if isinstance(error, WindowError | UsageError):
                self.stats.refused += 1
            else:
                self.stats.failed += 1
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

    # Several requests decoded together (--parallel)

    def _serve_together(self) -> None:
        streams: dict[Job, _Stream] = {}
        decoder: SlotDecoder[Job] | None = None
        try:
            while True:
                with self._wake:
                    state = self._state
                    while not state.waiting and not streams and not state.stopping:
                        self._wake.wait()
                    if not state.waiting and not streams:
                        return  # stopping, and nothing left
                    taken: list[Job] = []
                    while state.waiting and len(streams) + len(taken) < self.parallel:
                        taken.append(state.waiting.popleft())
                    state.running += taken
                for job in taken:
                    decoder = self._start_together(job, decoder, streams)
                for job in [job for job, stream in streams.items() if job.cancelled or stream.closed]:
                    assert decoder is not None  # a stream is a request in the decoder
                    decoder.drop(job)
                    streams.pop(job).cut(job)
                if decoder is not None and decoder.busy:
                    try:
                        stepped = decoder.step()
                    except Exception as error:  # the context is in doubt: every slot ends, a new one is made
                        for stream in streams.values():
                            stream.fail(error)
                        streams.clear()
                        decoder.close()
                        decoder = None
                        continue
                    for each in stepped:
                        _hand_on(each, streams)
        finally:
            for job, stream in streams.items():
                stream.cut(job)
            if decoder is not None:
                decoder.close()

    def _start_together(
        self, job: Job, decoder: SlotDecoder[Job] | None, streams: dict[Job, _Stream]
    ) -> SlotDecoder[Job] | None:
        """Plan the job, read its prompt into a free slot and start the thread that turns its
        events into its turn; the decoder (made on the first request)."""
        try:
            per_slot = self._slot_positions() if decoder is None else decoder.per_slot
            planned = self._plan(job, per_slot)
        except Exception as error:  # one request's bug must not stop the model
            self._unexpected(job, error)
            self._finished(job)
            return decoder
        if planned is None:
            self._finished(job)
            return decoder
        planner, turn = planned
        stream = _Stream()
        name = f"wai-serve {self.spec.id} reply"
        threading.Thread(
            target=self._consume, args=(job, planner, turn, stream), name=name, daemon=True
        ).start()
        try:
            if decoder is None:
                decoder = self._decoder(planner, per_slot)
            first = decoder.admit(job, turn.request, should_stop=lambda: job.cancelled)
        except Exception as error:  # the job's own thread says it (a WaiError, a stop, or a bug)
            stream.fail(error)
            return decoder
        streams[job] = stream
        _hand_on(first, streams)
        return decoder

    def _decoder(self, planner: TurnPlanner, per_slot: int) -> SlotDecoder[Job]:
        from wai.backends.llama_cpp.backend import LlamaCpp

        backend = planner.backends.get("local")
        assert isinstance(backend, LlamaCpp)  # wai serve serves local models
        return backend.slot_decoder(
            self.spec,
            self.parallel,
            per_slot,
            hint="serve fewer requests at once (--parallel) or give each fewer positions (--slot-context)",
        )

    def _slot_positions(self) -> int:
        """Positions of each slot: --slot-context, else DEFAULT_SLOT_CONTEXT, within the file's
        trained context (the planner loads the model to read it)."""
        trained = self.planner().windows(Target(self.spec, "local")).total_context
        asked = self.slot_context or DEFAULT_SLOT_CONTEXT
        if self.slot_context is not None and self.slot_context > trained:
            self._log(
                f"{self.spec.id}: --slot-context {self.slot_context} is over the model's trained "
                f"context; each slot has {trained} positions"
            )
        return min(asked, trained)

    def _consume(self, job: Job, planner: TurnPlanner, turn: PlannedTurn, stream: _Stream) -> None:
        try:
            self._generate(job, planner, turn, stream.events())
        except Exception as error:  # one request's bug must not stop the model
            self._unexpected(job, error)
        finally:
            stream.closed = True
            self._finished(job)

    def _generate(
        self, job: Job, planner: TurnPlanner, turn: PlannedTurn, events: Iterator[Event] | None
    ) -> None:
        from wai.llama.native import DecodeStopped

        sink = _JobSink(job, self.stats, self.stall_limit)
        try:
            result = planner.run(turn, sink, events=events)
        except DecodeStopped:  # stopped while the prompt was read: no result, nothing was said
            result = None
        if (
            result is not None
            and isinstance(result.error, SchemaMismatch)
            and result.finish_reason == "length"
        ):
            # Held by the grammar but cut by max_tokens: the client is told so by finish_reason
            # length, as OpenAI's and Workers AI's own servers tell it.
            result.error = None
        if result is not None and result.error is not None and not isinstance(result.error, _Cut):
            self.stats.failed += 1
            job.put(Failed(_failure(result.error, self.spec.gguf_path())))
            return
        if result is None or result.error is not None:
            job.cut_in_prompt = job.pieces == 0
            self._count_cancel(job)
            if job.stalled:
                self._log(
                    f"{self.spec.id}: a client took no events for {self.stall_limit:g} s: its reply was "
                    f"cut after {counted(job.pieces, 'token')}, and the model serves the next request"
                )
            job.put(Ended(job.cancel_reason or "cancelled"))
            return
        self.stats.completed += 1
        job.put(Ended(result=result))

    def _unexpected(self, job: Job, error: Exception) -> None:
        """A failure no part of wai expected: this job gets a 500, the thread serves the next one."""
        self.stats.failed += 1
        log_unexpected(self._log, self._debug, f"{self.spec.id}: unexpected error", error)
        message = f"wai serve could not run the model: {one_line(error)}"
        job.put(Failed(ApiFailure(500, INTERNAL_ERROR, message)))

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


class _Cut(WaiError):
    """The job was cancelled (its client went away, or stopped reading): its turn ends here."""


class _JobSink:
    """Where a served turn's events go: to the job, for the event loop to write to the client.

    Each piece of text is counted; once the job is cancelled, or its reader stays behind for
    the stall limit, the turn is cut after the piece in hand.
    """

    tells_output_cap = True  # the client reads the finish reason itself
    shows_waiting = False

    def __init__(self, job: Job, stats: ModelStats, stall_limit: float) -> None:
        self.job = job
        self.stats = stats
        self.stall_limit = stall_limit

    def start(self, info: TurnInfo) -> None:
        pass

    def feed(self, event: Event) -> None:
        job = self.job
        if isinstance(event, PromptRead):  # the page and the APIs have no use for it
            if job.cancelled:
                raise _Cut(job.cancel_reason or "cancelled")
            return
        if isinstance(event, Token):
            job.pieces += 1
            self.stats.tokens += 1
        if job.cancelled or not job.put(event, self.stall_limit):
            raise _Cut(job.cancel_reason or "cancelled")

    def finish(self, result: TurnResult) -> None:
        pass


def _stoppable(planner: TurnPlanner, turn: PlannedTurn, job: Job) -> Iterator[Event] | None:
    """The turn's events on llama.cpp, asked between two steps of the prompt's decoding whether the
    job was cancelled, so a long prompt stops within a batch; None elsewhere (the usual stream)."""
    from wai.backends.llama_cpp.backend import LlamaCpp

    backend = planner.backends.get(turn.target.backend)
    if not isinstance(backend, LlamaCpp):
        return None
    return backend.stream(turn.request, should_stop=lambda: job.cancelled)


def within_slot(spec: ModelSpec, positions: int) -> ModelSpec:
    """The model's windows as one slot of `positions` holds them."""
    return dataclasses.replace(
        spec,
        context_window=min(spec.context_window, positions),
        max_output=min(spec.max_output, positions),
        total_context=min(spec.total_context, positions),
    )


_END = object()


class _Stream:
    """A job's events on their way from the model's thread, a step at a time, to the thread that
    turns them into its turn."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[list[Event] | BaseException | object] = queue.SimpleQueue()
        self.closed = False  # its reader stopped reading: the slot can go

    def put(self, events: list[Event]) -> None:
        if events:
            self._queue.put(events)

    def end(self) -> None:
        self._queue.put(_END)

    def fail(self, error: BaseException) -> None:
        self._queue.put(error)

    def cut(self, job: Job) -> None:
        self.fail(_Cut(job.cancel_reason or "cancelled"))

    def events(self) -> Iterator[Event]:
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, list)
                yield from item
        finally:
            self.closed = True


def _hand_on(stepped: Stepped[Job], streams: dict[Job, _Stream]) -> None:
    stream = streams[stepped.key]
    stream.put(stepped.events)
    if stepped.ended:
        stream.end()
        del streams[stepped.key]


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

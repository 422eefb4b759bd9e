"""A request on its way through a model's thread (a Job), the items it hands to the event loop, and
the sinks a served turn's events go into: the job's, waiting for a slow reader when one request
decodes at a time (JobSink), never waiting when several decode together (SlotSink)."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass

from wai.errors import WaiError
from wai.events import Event, PromptRead, Token
from wai.serve.protocol import ApiFailure, Ask
from wai.tokens.budget import Plan
from wai.turn_result import TurnInfo, TurnResult

# Events a job may hold for a slow reader before the model waits for it.
_BACKLOG = 64


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

    def cut_as_stalled(self, limit: float) -> None:
        """Cancel the job as a client that took no events for `limit` seconds."""
        self.stalled = True
        self.cancel(f"client gone (it took no events for {limit:g} s)")

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def pieces_after_cancel(self) -> int | None:
        """Pieces produced after the cancel was asked for: what "stops within a token" measures."""
        return None if self.pieces_at_cancel is None else self.pieces - self.pieces_at_cancel

    # The model's thread's side

    def offer(self, item: Item) -> bool:
        """Hand an item to the event loop if the reader has room for it, never waiting; False when
        it has none (or the job was cancelled: the item is of no use then)."""
        if not isinstance(item, Ended | Failed) and not self._room.acquire(blocking=False):
            return False
        if not self.cancelled or isinstance(item, Ended | Failed):
            self._send(item)
        return True

    def put(self, item: Item, patience: float | None = None) -> bool:
        """Hand an item to the event loop, waiting while the reader is behind; False once cancelled.

        A reader that takes nothing for `patience` seconds while the backlog is full is taken for
        gone (a client that stopped reading but keeps its connection): the job is cancelled."""
        if not isinstance(item, Ended | Failed):
            if not self._room.acquire(timeout=patience):
                assert patience is not None  # without patience the wait ends only with room
                self.cut_as_stalled(patience)
                return False
            if self.cancelled:
                return False
        return self._send(item)

    def _send(self, item: Item) -> bool:
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


class Cut(WaiError):
    """The job was cancelled (its client went away, or stopped reading): its turn ends here."""


class JobSink:
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
                raise Cut(job.cancel_reason or "cancelled")
            return
        if isinstance(event, Token):
            job.pieces += 1
            self.stats.tokens += 1
        if job.cancelled or not job.put(event, self.stall_limit):
            raise Cut(job.cancel_reason or "cancelled")

    def finish(self, result: TurnResult) -> None:
        pass


class SlotSink:
    """Where the events of a turn decoded beside others go: to its job, never waiting for the
    reader (the model's thread serves every slot). What the reader has no room for is held here,
    in order, with the reply's last item; `behind_since` says since when, and the model's thread
    decodes no more of this reply until the reader catches up (or is cut for the stall limit)."""

    tells_output_cap = True  # the client reads the finish reason itself
    shows_waiting = False

    def __init__(self, job: Job, stats: ModelStats) -> None:
        self.job = job
        self.stats = stats
        self.held: collections.deque[Item] = collections.deque()
        self.behind_since: float | None = None
        self.cut_end: Item | None = None  # the reply's last item, when settle() cut it off

    def start(self, info: TurnInfo) -> None:
        pass

    def feed(self, event: Event) -> None:
        job = self.job
        if job.cancelled:
            raise Cut(job.cancel_reason or "cancelled")
        if isinstance(event, PromptRead):
            return
        if isinstance(event, Token):
            job.pieces += 1
            self.stats.tokens += 1
        self.hand(event)

    def finish(self, result: TurnResult) -> None:
        pass

    def hand(self, item: Item) -> None:
        self.held.append(item)
        self.flush()

    def settle(self) -> bool:
        """Hand on what the reader has room for; True once it has every item it will get: all
        of them, or, its job cancelled (a reader behind for the stall limit, a server stopping),
        the end saying why in place of those still held. A reader still there must be told that
        its reply ended, never left waiting for it."""
        if not (self.job.cancelled and self.held):
            return self.flush()
        # Handed on now, the rest would read as a whole reply with a hole in it.
        self.cut_end = self.held[-1]
        self.held.clear()
        self.job.offer(Ended(self.job.cancel_reason or "cancelled"))
        return True

    def flush(self) -> bool:
        """Hand on what the reader has room for; True when nothing is held back."""
        held = self.held
        while held:
            if not self.job.offer(held[0]):
                if self.behind_since is None:
                    self.behind_since = time.monotonic()
                return False
            held.popleft()
        self.behind_since = None
        return True

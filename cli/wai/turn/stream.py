"""`stream_turn`: streams a backend's events into a sink and returns the turn's result whatever happens
(the values, TurnInfo and TurnResult, are in wai/turn_result.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, assert_never

from wai.errors import OutputError, WaiError
from wai.events import Event, Finish, Loaded, Notice, PromptRead, Reasoning, Token, Usage
from wai.turn_result import TurnInfo, TurnResult

if TYPE_CHECKING:
    from wai.backends.base import Backend
    from wai.backends.request import Request
    from wai.render.base import Sink


def turn_info(backend: Backend, request: Request, *, prompt_exact: bool = True) -> TurnInfo:
    return TurnInfo(
        model=request.model.id,
        backend=backend.name,
        # A provider's model is shown with the provider's own name ("vllm"), not the API's.
        backend_title=request.model.provider or backend.title,
        precision=backend.precision(request),
        context_window=request.model.context_window,
        max_output=request.model.max_output,
        max_tokens=request.max_tokens,
        prompt_tokens=request.prompt_tokens,
        prompt_exact=prompt_exact,
        reply_room=(
            None if request.prompt_tokens is None else request.model.total_context - request.prompt_tokens
        ),
        price=request.model.price,
        bills_neurons=backend.bills_neurons,
    )


def stream_turn(
    backend: Backend,
    request: Request,
    sink: Sink,
    info: TurnInfo,
    *,
    events: Iterator[Event] | None = None,
) -> TurnResult:
    """Stream one reply into `sink` and return what came, complete or not.

    A Ctrl-C during the reply ends it as `interrupted`; an expected failure (a WaiError, from the
    backend, the output or the sink) ends it with `error` set. Either way the partial text is kept.
    `events`: the backend's stream of this request when the caller opened it itself (wai serve
    opens it with a check that stops a long prompt's decoding); else `backend.stream(request)`.
    """
    turn = TurnStream(request, sink, info)
    if events is None:
        events = backend.stream(request)
    try:
        turn.start()
        for event in events:
            turn.feed(event)
    except KeyboardInterrupt:
        _close_quietly(events)
        return turn.interrupted()
    except WaiError as error:
        _close_quietly(events)
        return turn.failed(error)
    except BaseException:
        _close_quietly(events)
        raise
    return turn.end()


class TurnStream:
    """One turn's result, built from its events as they are fed (the caller pulls them from a
    backend, or a server hands over each step's): `start` tells the sink, each event goes on to
    it, and `end`, `failed` or `interrupted` settles the result and tells the sink."""

    def __init__(self, request: Request, sink: Sink, info: TurnInfo) -> None:
        self.request = request
        self.sink = sink
        self.result = TurnResult(
            info=info,
            prompt_tokens=info.prompt_tokens,
            usage_exact=info.prompt_exact,
            prompt_exact=info.prompt_exact,
            schema_asked=request.schema is not None,
        )
        self._pieces: list[str] = []
        self._thinking = _Thinking()
        self._usage: Usage | None = None
        self._started = time.perf_counter()

    def start(self) -> None:
        """Tell the sink the turn begins (its WaiError, if any, goes to the caller)."""
        self.sink.start(self.result.info)

    def feed(self, event: Event) -> None:
        """Take one event and hand it to the sink (whose WaiError, if any, goes to the caller)."""
        result = self.result
        match event:
            case Token(text=text):
                if text:
                    now = time.perf_counter() - self._started
                    if result.timings.first_token is None:
                        result.timings.first_token = now
                    self._thinking.answer_began(now)
                self._pieces.append(text)
            case Reasoning(text=text):
                if text:
                    now = time.perf_counter() - self._started
                    if result.timings.first_token is None:
                        result.timings.first_token = now
                    self._thinking.add(text, now)
            case Usage():
                self._usage = event
                result.prompt_tokens = event.prompt_tokens
                result.completion_tokens = event.completion_tokens
                result.usage_exact = result.prompt_exact = event.exact
                result.reported_reasoning_tokens = event.reasoning_tokens
                result.cached_tokens = event.cached_tokens
            case Finish(reason=reason):
                result.finish_reason = reason
            case Loaded(seconds=seconds):
                result.timings.load = seconds
            case Notice(text=text):
                result.notices.append(text)
            case PromptRead():
                pass  # for the sink to show
            case _:
                assert_never(event)
        self.sink.feed(event)

    def end(self) -> TurnResult:
        """Every event came: the whole reply (held to its schema, when it has one)."""
        result = self.result
        self._settle(result.finish_reason or "stop")
        if self.request.schema is not None:
            _hold_to_schema(result, self.request)
        try:
            self.sink.finish(result)
        except OutputError as error:  # the reply came whole but could not be shown: kept, and said
            result.finish_reason = "error"
            result.error = error
        return result

    def failed(self, error: WaiError) -> TurnResult:
        """The reply stopped on an expected failure: what came, and `error`."""
        self._settle("error")
        self.result.error = error
        with contextlib.suppress(OutputError):  # `error` is the one to tell (or was this very one)
            self.sink.finish(self.result)
        return self.result

    def interrupted(self) -> TurnResult:
        """Ctrl-C (or a stop signal) cut the reply: what came."""
        self._settle("interrupted")
        # The interruption is what there is to tell; a SIGHUP may come from a terminal already gone.
        with contextlib.suppress(OutputError, OSError):
            self.sink.finish(self.result)
        return self.result

    def _settle(self, reason: str) -> None:
        _settle(self.result, self._pieces, self._thinking, self._started, reason)
        if self._usage is None:
            _estimate_usage(self.result, self._pieces, self._thinking.pieces, streamed=self.request.stream)


def _hold_to_schema(result: TurnResult, request: Request) -> None:
    """Validate a whole reply against the schema it was asked to follow: its value, or the
    SchemaMismatch (exit 4) that keeps it off stdout; the raw text stays in the result."""
    from wai.errors import SchemaMismatch
    from wai.schema.reply import parse_reply

    assert request.schema is not None
    try:
        result.parsed = parse_reply(result.text, request.schema.document, finish_reason=result.finish_reason)
    except SchemaMismatch as mismatch:
        result.error = mismatch


class _Thinking:
    """The thinking as it arrives, and how long it lasted."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.began: float | None = None
        self.seconds: float | None = None

    def add(self, text: str, now: float) -> None:
        if self.began is None:
            self.began = now
        self.pieces.append(text)

    def answer_began(self, now: float) -> None:
        if self.began is not None and self.seconds is None:
            self.seconds = now - self.began


def _settle(result: TurnResult, pieces: list[str], thinking: _Thinking, started: float, reason: str) -> None:
    result.text = "".join(pieces)
    result.timings.total = time.perf_counter() - started
    result.reasoning = "".join(thinking.pieces)
    result.thoughts = len(thinking.pieces)
    if thinking.began is not None:
        thinking.answer_began(result.timings.total)  # no answer: it thought until the end
        result.timings.thinking = thinking.seconds
    if result.finish_reason is None or reason in ("interrupted", "error"):
        result.finish_reason = reason  # type: ignore[assignment]


def _estimate_usage(result: TurnResult, pieces: list[str], thoughts: list[str], *, streamed: bool) -> None:
    """The backend reported no usage (a server that sends none, a reply cut short): one rule for
    every place the figures go (footer, transcript, --json), an estimate marked as one (the
    prompt's count stays what it was: exact when counted exactly before sending). A stream
    carries one token per text event; a whole reply is counted by the prompts' estimate. The
    thinking is generated output too, and counts the same way."""
    from wai.tokens.counters import EstimatedCounter

    shown = sum(1 for piece in (*pieces, *thoughts) if piece)
    whole = EstimatedCounter().count_text(result.reasoning + result.text) if not streamed else 0
    result.completion_tokens = shown if streamed else whole
    result.usage_exact = False


def _close_quietly(events: Iterator[Event]) -> None:
    close = getattr(events, "close", None)
    if close is not None:
        # The turn is already failing; its own error is the one to report.
        with contextlib.suppress(Exception):
            close()

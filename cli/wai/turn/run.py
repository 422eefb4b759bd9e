"""One turn as a value: what is known before it (TurnInfo), what it produced (TurnResult), and
`run_turn`, which streams a backend's events into a sink and returns the result whatever happens.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, assert_never

from wai.backends.registry import registration
from wai.errors import OutputError, WaiError
from wai.events import Event, Finish, FinishReason, Loaded, Notice, Reasoning, Token, Usage

if TYPE_CHECKING:
    from wai.backends.base import Backend
    from wai.conversation import Request
    from wai.render.base import Sink


def is_reply(text: str, finish_reason: str | None) -> bool:
    """Whether a turn counts as a reply: False for one stopped or failed before any text came.

    Such a turn is logged, but is no part of the conversation (its question is not resent).
    """
    return bool(text) or finish_reason not in ("error", "interrupted")


@dataclass(frozen=True, slots=True)
class TurnInfo:
    """Known before the first token: shown in titles and footers."""

    model: str
    backend: str  # the backend's name, as the transcript and --json keep it
    precision: str | None
    context_window: int
    max_output: int
    max_tokens: int
    prompt_tokens: int | None = None
    prompt_exact: bool = True
    more_hint: str = "raise --max-tokens"  # how to allow a longer reply, in this command's words
    reply_room: int | None = None  # the largest max_tokens this prompt allows (None: max_output)
    effort_hint: str = "lower --reasoning-effort"  # how to make the thinking shorter, likewise
    backend_title: str = ""  # the name users know the backend by ("Workers AI"); else its name
    warnings: tuple[str, ...] = ()  # what wai warned of before the turn (a cut, a lowered max_tokens)

    @property
    def most_tokens(self) -> int:
        return self.max_output if self.reply_room is None else min(self.reply_room, self.max_output)


@dataclass(slots=True)
class Timings:
    """Seconds from the start of the turn; `load` is model load time (local backend).

    `first_token`: the first output of either kind, thinking or answer (both are generated
    tokens, so the rate is figured from it); `thinking`: from the first piece of thinking to the
    answer's first token (or the end, when none came).
    """

    first_token: float | None = None
    total: float = 0.0
    load: float | None = None
    thinking: float | None = None

    def tokens_per_second(self, completion_tokens: int) -> float | None:
        if self.first_token is None or completion_tokens < 2:
            return None
        generating = self.total - self.first_token
        return (completion_tokens - 1) / generating if generating > 0 else None


@dataclass(slots=True)
class TurnResult:
    """What a turn produced, complete or not."""

    info: TurnInfo
    text: str = ""
    reasoning: str = ""  # the thinking, apart from the answer
    thoughts: int = 0  # events that carried thinking
    reported_reasoning_tokens: int | None = None  # the server's own count of the thinking
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_exact: bool = True  # every figure: the prompt's and the reply's
    prompt_exact: bool = True  # the prompt's alone (counted exactly before sending, or by the server)
    timings: Timings = field(default_factory=Timings)
    error: WaiError | None = None  # why the turn failed; what arrived before is kept above
    notices: list[str] = field(default_factory=list)  # what the backend said beside the text

    @property
    def interrupted(self) -> bool:
        return self.finish_reason == "interrupted"

    @property
    def answered(self) -> bool:
        """The turn counts as a reply, for the transcript's conversation and the chat session."""
        return is_reply(self.text, self.finish_reason)

    @property
    def error_text(self) -> str | None:
        return str(self.error) if self.error is not None else None

    @property
    def reasoning_tokens(self) -> int | None:
        """Tokens of thinking: the server's count, else one per event (servers send one token an
        event); None when there was no thinking."""
        if self.reported_reasoning_tokens is not None:
            return self.reported_reasoning_tokens
        return self.thoughts if self.reasoning else None

    @property
    def thinking_only(self) -> bool:
        """The model thought but its answer never began."""
        return bool(self.reasoning.strip()) and not self.text.strip()


def turn_info(backend: Backend, request: Request, *, prompt_exact: bool = True) -> TurnInfo:
    return TurnInfo(
        model=request.model.id,
        backend=backend.name,
        # A provider's model is shown with the provider's own name ("vllm"), not the API's.
        backend_title=request.model.provider or registration(backend.name).title,
        precision=backend.precision(request),
        context_window=request.model.context_window,
        max_output=request.model.max_output,
        max_tokens=request.max_tokens,
        prompt_tokens=request.prompt_tokens,
        prompt_exact=prompt_exact,
        reply_room=(
            None if request.prompt_tokens is None else request.model.total_context - request.prompt_tokens
        ),
    )


def run_turn(backend: Backend, request: Request, sink: Sink, info: TurnInfo) -> TurnResult:
    """Stream one reply into `sink` and return what came, complete or not.

    A Ctrl-C during the reply ends it as `interrupted`; an expected failure (a WaiError, from the
    backend or from the output) ends it with `error` set. Either way the partial text is kept.
    """
    result = TurnResult(
        info=info,
        prompt_tokens=info.prompt_tokens,
        usage_exact=info.prompt_exact,
        prompt_exact=info.prompt_exact,
    )
    pieces: list[str] = []
    thinking = _Thinking()
    started = time.perf_counter()
    events: Iterator[Event] = backend.stream(request)
    usage: Usage | None = None

    def settle(reason: str) -> None:
        _settle(result, pieces, thinking, started, reason)
        if usage is None:
            _estimate_usage(result, pieces, thinking.pieces, streamed=request.stream)

    try:
        sink.start(info)
        for event in events:
            match event:
                case Token(text=text):
                    if text:
                        now = time.perf_counter() - started
                        if result.timings.first_token is None:
                            result.timings.first_token = now
                        thinking.answer_began(now)
                    pieces.append(text)
                case Reasoning(text=text):
                    if text:
                        now = time.perf_counter() - started
                        if result.timings.first_token is None:
                            result.timings.first_token = now
                        thinking.add(text, now)
                case Usage():
                    usage = event
                    result.prompt_tokens = event.prompt_tokens
                    result.completion_tokens = event.completion_tokens
                    result.usage_exact = result.prompt_exact = event.exact
                    result.reported_reasoning_tokens = event.reasoning_tokens
                case Finish(reason=reason):
                    result.finish_reason = reason
                case Loaded(seconds=seconds):
                    result.timings.load = seconds
                case Notice(text=text):
                    result.notices.append(text)
                case _:
                    assert_never(event)
            sink.feed(event)
    except KeyboardInterrupt:
        _close_quietly(events)
        settle("interrupted")
        # The interruption is what there is to tell; a SIGHUP may come from a terminal already gone.
        with contextlib.suppress(OutputError, OSError):
            sink.finish(result)
        return result
    except WaiError as error:
        _close_quietly(events)
        settle("error")
        result.error = error
        with contextlib.suppress(OutputError):  # `error` is the one to tell (or was this very one)
            sink.finish(result)
        return result
    except BaseException:
        _close_quietly(events)
        raise
    settle(result.finish_reason or "stop")
    try:
        sink.finish(result)
    except OutputError as error:  # the reply came whole but could not be shown: kept, and said
        result.finish_reason = "error"
        result.error = error
    return result


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
    carries one token per text event; a whole reply is counted as 2 tokens per 5 bytes. The
    thinking is generated output too, and counts the same way."""
    from wai.windows.counters import EstimatedCounter

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

"""One turn as a value: what is known before it (TurnInfo) and what it produced (TurnResult).

Sinks show them, the transcript keeps them, the turn driver fills them in: a value every layer
above may read, so it sits below them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wai.errors import WaiError
from wai.events import FinishReason
from wai.pricing import Cost, Price, cost_of


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
    price: Price | None = None  # the model's price in the catalog; None: no cost is shown
    bills_neurons: bool = False  # the backend bills in neurons (Workers AI): the cost is said in them too

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
    cached_tokens: int | None = None  # of prompt_tokens, those the server had cached (its own figure)
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_exact: bool = True  # every figure: the prompt's and the reply's
    prompt_exact: bool = True  # the prompt's alone (counted exactly before sending, or by the server)
    timings: Timings = field(default_factory=Timings)
    error: WaiError | None = None  # why the turn failed; what arrived before is kept above
    notices: list[str] = field(default_factory=list)  # what the backend said beside the text
    schema_asked: bool = False  # --schema: the text had to be JSON satisfying it
    parsed: object = None  # ... and this is its value, once it does

    @property
    def cost(self) -> Cost | None:
        """What the turn cost by the catalog's price; None without a price or a prompt count."""
        price = self.info.price
        if price is None or self.prompt_tokens is None:
            return None
        return cost_of(price, self.prompt_tokens, self.completion_tokens or 0, self.cached_tokens)

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

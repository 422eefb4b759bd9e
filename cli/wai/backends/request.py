"""The Request a backend receives: everything already decided and within the caps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wai.catalog.entries import ModelSpec
from wai.conversation import Message, ReasoningEffort, Timeouts
from wai.sampling import Sampling

if TYPE_CHECKING:
    from wai.schema import Schema  # only with --schema, imported by the command that reads it


@dataclass(frozen=True, slots=True)
class Request:
    """One turn, ready to send: `max_tokens` already fits every window of `model`."""

    model: ModelSpec
    messages: tuple[Message, ...]
    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    prompt_tokens: int | None = None  # what the budget counted, when it counted
    reasoning_effort: ReasoningEffort | None = None  # only for a model that takes it
    # The one user message is the whole prompt, sent verbatim: no chat template, no system prompt.
    raw: bool = False
    # --schema: the reply must be JSON satisfying it (held by a grammar where the backend can).
    schema: Schema | None = None
    # Prompt caching: the same value on every request of one conversation (`x-session-affinity`
    # on Workers AI), so the server that holds its prefix answers; None outside a conversation.
    affinity: str | None = None

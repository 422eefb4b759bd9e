"""Messages, and the Request a backend receives: everything already decided and within the caps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from wai.catalog.entries import ModelSpec
from wai.sampling import Sampling

Role = Literal["system", "user", "assistant"]
ReasoningEffort = Literal["low", "medium", "high"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, and for the next event of a stream."""

    connect: float = 10.0
    read: float = 60.0
    read_given: bool = False  # --read-timeout was given: it wins over a provider's `timeout`


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

"""The small values that flow from a backend to a sink, one per happening."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "interrupted", "error"]


@dataclass(frozen=True, slots=True)
class Token:
    """A piece of the reply's text, as it arrives (may be empty, never split mid-character)."""

    text: str


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A piece of the model's thinking before (or beside) its answer: a text of its own, never
    part of the reply's text. Reasoning models send it; every sink decides how to show it."""

    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token figures for the request; `exact` is False when they were estimated."""

    prompt_tokens: int
    completion_tokens: int  # the thinking included: it is generated output like the answer
    exact: bool = True
    reasoning_tokens: int | None = None  # of completion_tokens, the thinking, when the server says
    cached_tokens: int | None = None  # of prompt_tokens, those the server held already (prompt caching)


@dataclass(frozen=True, slots=True)
class Finish:
    """The reply is over; `reason` says why."""

    reason: FinishReason


@dataclass(frozen=True, slots=True)
class Notice:
    """Something about the reply the user should know that its text does not show (a warning)."""

    text: str


@dataclass(frozen=True, slots=True)
class Loaded:
    """The backend had to load the model first (local backend); part of the turn's timings."""

    seconds: float


@dataclass(frozen=True, slots=True)
class PromptRead:
    """How far the backend has read the prompt before the reply's first token: `read` of its
    `total` tokens (the local backend, after each of llama.cpp's batches). A long prompt takes
    seconds to read on a CPU; this is what a terminal shows meanwhile."""

    read: int
    total: int


Event = Token | Reasoning | Usage | Finish | Loaded | Notice | PromptRead

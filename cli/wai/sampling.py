"""The sampling options, declared once: the command line, `/set`, the request fields, the
transcript and each backend's refusals are all derived from `SAMPLING_OPTIONS`.

Each option says its name (the `Sampling` field, the request field, the `/set` name), its type,
its help, and `accepted`: what no backend could use (a negative temperature, say), checked on
the command line and by `/set` everywhere. A backend's own narrower ranges (Workers AI's `top_k`
1 to 50) are its class's `sampling_ranges`, checked once the backend is known: other
backends take wider ones (vLLM takes `top_k` 100, llama.cpp any `top_k`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling options; None means the backend's own default. One field per SAMPLING_OPTIONS entry."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None

    def given(self) -> dict[str, float | int]:
        """The options set, by name, in their declared order: what a request or a transcript carries."""
        values = ((option.name, getattr(self, option.name)) for option in SAMPLING_OPTIONS)
        return {name: value for name, value in values if value is not None}


@dataclass(frozen=True, slots=True)
class Span:
    """The values a number may take, both ends included; an infinite end is no bound."""

    low: float = -math.inf
    high: float = math.inf

    def holds(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high

    def __and__(self, other: Span) -> Span:
        return Span(max(self.low, other.low), min(self.high, other.high))

    @property
    def lowest(self) -> float | None:
        return self.low if math.isfinite(self.low) else None

    @property
    def highest(self) -> float | None:
        return self.high if math.isfinite(self.high) else None

    def words(self, to: str = " to ") -> str:
        """The span as `/set` says it: "0 to 5", "0 or more", or "" when any number will do."""
        low, high = self.lowest, self.highest
        if low is not None and high is not None:
            return f"{_number(low)}{to}{_number(high)}"
        if low is not None:
            return f"{_number(low)} or more"
        if high is not None:
            return f"{_number(high)} or less"
        return ""


def _number(value: float) -> str:
    """A bound as people write it: 9999999999, not 1e+10; 0.001 as it is."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True, slots=True)
class SamplingOption:
    """One sampling option. `what` and `note` make its `/set` description ("repetition penalty,
    0 to 2 (1 is off)"); `help` is its command-line help."""

    name: str
    kind: type[float] | type[int]
    help: str
    what: str
    accepted: Span = Span()
    note: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe(self, span: Span) -> str:
        """What `/set` says of the option when the values it takes are `span`."""
        words = span.words()
        text = f"{self.what}, {words}" if words else self.what
        return f"{text} ({self.note})" if self.note else text


SAMPLING_OPTIONS: tuple[SamplingOption, ...] = (
    SamplingOption(
        "temperature", float, help="Sampling temperature.", what="sampling temperature", accepted=Span(0.0)
    ),
    SamplingOption(
        "top_p", float, help="Nucleus sampling.", what="nucleus sampling", accepted=Span(0.0, 1.0)
    ),
    SamplingOption("top_k", int, help="Top-k sampling.", what="top-k sampling"),
    SamplingOption("seed", int, help="Random seed.", what="random seed", accepted=Span(0)),
    SamplingOption(
        "frequency_penalty",
        float,
        help="Penalise tokens by how often they appeared.",
        what="penalty by how often a token appeared",
    ),
    SamplingOption(
        "presence_penalty",
        float,
        help="Penalise tokens that appeared at all.",
        what="penalty for a token that appeared at all",
    ),
    SamplingOption(
        "repetition_penalty",
        float,
        help="Repetition penalty (1 is off).",
        what="repetition penalty",
        accepted=Span(0.0),
        note="1 is off",
    ),
)
OPTIONS_BY_NAME: Mapping[str, SamplingOption] = {option.name: option for option in SAMPLING_OPTIONS}

# A backend's own ranges, by option name; an option it does not name takes what `accepted` allows.
SamplingRanges = Mapping[str, Span]


def span_on(option: SamplingOption, ranges: SamplingRanges) -> Span:
    """The values `option` may take on a backend with these ranges."""
    own = ranges.get(option.name)
    return option.accepted if own is None else option.accepted & own


def out_of_range(sampling: Sampling, ranges: SamplingRanges, owner: str) -> str | None:
    """Why a backend with these ranges would refuse `sampling`, in the command line's words;
    None when it takes it. `owner`: whose ranges they are ("Workers AI")."""
    for name, value in sampling.given().items():
        span = ranges.get(name)
        if span is not None and not span.holds(value):
            flag = OPTIONS_BY_NAME[name].flag
            return (
                f"Invalid value for '{flag}': {value} is not in the range {span.low:g}<=x<={span.high:g} "
                f"({owner}'s range for it)"
            )
    return None

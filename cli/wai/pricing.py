"""What a turn costs: a model's price per million tokens, and the cost of one usage in USD and neurons.

Workers AI bills in neurons, $0.011 per 1,000 of them, with 10,000 neurons a day free; it returns
no neuron figure per request, so the figure is derived from the usage and the price, as
Cloudflare's own dashboard does. Cached prompt tokens (`usage.prompt_tokens_details.cached_tokens`,
a part of `prompt_tokens`) are billed at the cached rate where the model has one.

A bottom-layer module (stdlib only): the catalog, the turn's result and the ledger all read it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

USD_PER_NEURON = 0.011 / 1000
FREE_NEURONS_PER_DAY = 10_000
PRICE_KEYS = ("input", "cached_input", "output")


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens: prompt tokens, cached prompt tokens (None: at the input rate), output."""

    input: float
    output: float
    cached_input: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"input": self.input, "cached_input": self.cached_input, "output": self.output}


@dataclass(frozen=True, slots=True)
class Cost:
    """What one turn (or many) cost: USD, and the same in Workers AI's neurons."""

    usd: float
    neurons: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.usd + other.usd, self.neurons + other.neurons)

    def as_dict(self) -> dict[str, float]:
        return {"usd": round(self.usd, 10), "neurons": round(self.neurons, 6)}


def cost_of(
    price: Price, prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None
) -> Cost:
    """The cost of one usage; cached tokens (a part of the prompt's) at their own rate."""
    cached = min(max(cached_tokens or 0, 0), prompt_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    usd = (
        (prompt_tokens - cached) * price.input + cached * cached_rate + completion_tokens * price.output
    ) / 1_000_000
    return Cost(usd, usd / USD_PER_NEURON)


def neurons_of(usd: float) -> float:
    return usd / USD_PER_NEURON


def price_from_table(raw: Mapping[str, object]) -> Price:
    """A price as models.toml writes it: `{ input = 0.95, cached_input = 0.16, output = 4.0 }`
    (USD per million tokens); ValueError saying what is wrong."""
    unknown = sorted(set(raw) - set(PRICE_KEYS))
    if unknown:
        raise ValueError(f"unknown key '{unknown[0]}' (known keys: {', '.join(PRICE_KEYS)})")
    figures: dict[str, float | None] = {}
    for key in PRICE_KEYS:
        value = raw.get(key)
        if value is None:
            if key != "cached_input":
                raise ValueError(f"'{key}' is missing (USD per million {key} tokens)")
            figures[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not _plausible(float(value)):
            raise ValueError(
                f"'{key}' must be a number of USD per million tokens from 0 to 10000, got {value!r}"
            )
        figures[key] = float(value)
    assert figures["input"] is not None and figures["output"] is not None
    return Price(input=figures["input"], output=figures["output"], cached_input=figures["cached_input"])


def price_from_listing(raw: object) -> Price | None:
    """The `price` property of Workers AI's model search: a list of `{unit, price, currency}` with
    units "per M input tokens", "per M cached input tokens", "per M output tokens". None when it
    is absent, not in USD, or lacks the input or output rate (no guess stands in for a price).
    A property's value is usually a string: the list may come as its JSON text, and a price as
    text ("0.3", "$0.3")."""
    if isinstance(raw, str):
        import json  # only for a listing that gives its price as text

        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, list):
        return None
    rates: dict[str, float] = {}
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        unit, value, currency = item.get("unit"), item.get("price"), item.get("currency", "USD")
        if not isinstance(unit, str) or str(currency).upper() != "USD":
            continue
        if isinstance(value, str):
            try:
                value = float(value.strip().removeprefix("$"))  # never "0,27": 0.27 or 27?
            except ValueError:
                continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not _plausible(float(value)):
            continue
        words = " ".join(unit.lower().split())
        for key, wanted in (
            ("cached_input", "per m cached input tokens"),
            ("input", "per m input tokens"),
            ("output", "per m output tokens"),
        ):
            if words == wanted:
                rates[key] = float(value)
    if "input" not in rates or "output" not in rates:
        return None
    return Price(input=rates["input"], output=rates["output"], cached_input=rates.get("cached_input"))


def _plausible(value: float) -> bool:
    return math.isfinite(value) and 0 <= value <= 10_000


def usd_text(usd: float) -> str:
    """A cost for people: "$0.0042", "$1.23"; enough digits to tell a tiny turn from nothing."""
    if usd == 0:
        return "$0"
    if usd >= 1:
        return f"${usd:,.2f}"
    digits = max(2, 1 - math.floor(math.log10(usd)))
    return f"${usd:.{min(digits, 8)}f}"


def neurons_text(neurons: float) -> str:
    return f"{neurons:,.1f} neurons" if neurons < 100 else f"{neurons:,.0f} neurons"


def budget_text(neurons: float) -> str:
    """A budget as its owner wrote it: 5,000; 0.5."""
    return f"{neurons:,.0f}" if neurons >= 10 else f"{neurons:g}"

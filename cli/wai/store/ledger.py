"""The usage ledger: tokens, cost and neurons of the logged turns, totalled by day or by model.

Days are UTC days, as Workers AI's free allocation (10,000 neurons) is counted. A turn counts
whatever became of it (a reply /retry replaced was sent and paid for too); a turn of a model
without a price adds its tokens but no cost, and is counted apart as unpriced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from wai.errors import UsageError
from wai.pricing import FREE_NEURONS_PER_DAY
from wai.store.database import Store, StoredTurn

GroupBy = Literal["day", "model"]
_SPAN = re.compile(r"^\s*(\d+)\s*([dhw])\s*$")


@dataclass(slots=True)
class Totals:
    """What a set of turns used and cost."""

    turns: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0
    neurons: float = 0.0
    unpriced_turns: int = 0  # turns of a model without a price: their cost is not known
    billed_turns: int = 0  # turns with a neuron figure (Workers AI, priced): zero is a figure too

    def add(self, turn: StoredTurn) -> None:
        data = turn.data
        self.turns += 1
        self.prompt_tokens += data.prompt_tokens or 0
        self.cached_tokens += data.cached_tokens or 0
        self.completion_tokens += data.completion_tokens or 0
        if data.cost_usd is None:
            self.unpriced_turns += 1
        else:
            self.usd += data.cost_usd
        if data.neurons is not None:
            self.billed_turns += 1
            self.neurons += data.neurons

    def as_dict(self) -> dict[str, object]:
        return {
            "turns": self.turns,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "usd": round(self.usd, 10),
            "neurons": round(self.neurons, 6),
            "unpriced_turns": self.unpriced_turns,
        }


@dataclass(slots=True)
class Ledger:
    since: datetime
    by: GroupBy
    rows: dict[str, Totals] = field(default_factory=dict)
    total: Totals = field(default_factory=Totals)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`--since`: a span back from now (`7d`, `24h`, `2w`) or a UTC day (`2026-12-01`)."""
    now = now or datetime.now(UTC)
    match = _SPAN.match(text)
    if match:
        count, unit = int(match[1]), match[2]
        hours = {"h": 1, "d": 24, "w": 24 * 7}[unit] * count
        try:
            return now - timedelta(hours=hours)
        except OverflowError:  # further back than a date goes: every turn there is
            return datetime.min.replace(tzinfo=UTC)
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since {text!r} is neither a span nor a day", hint="e.g. --since 7d, 24h, 2w or 2026-12-01"
        ) from None
    return datetime.combine(day, time(), tzinfo=UTC)


def day_start(now: datetime | None = None) -> datetime:
    """The start of today in UTC, when Workers AI's daily allocation starts again."""
    now = now or datetime.now(UTC)
    return datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def ledger(store: Store, since: datetime, by: GroupBy) -> Ledger:
    result = Ledger(since=since, by=by)
    for turn in store.turns_since(_stamp(since)):
        key = turn.created_at[:10] if by == "day" else turn.data.model
        result.rows.setdefault(key, Totals()).add(turn)
        result.total.add(turn)
    result.rows = dict(sorted(result.rows.items()))
    return result


def totals(turns: Iterable[StoredTurn]) -> Totals:
    summed = Totals()
    for turn in turns:
        summed.add(turn)
    return summed


def neurons_today(store: Store, now: datetime | None = None) -> float:
    """The neurons the logged turns spent today (UTC): what counts against the free allocation."""
    return totals(store.turns_since(_stamp(day_start(now)))).neurons


def free_share(neurons: float) -> float:
    return neurons / FREE_NEURONS_PER_DAY

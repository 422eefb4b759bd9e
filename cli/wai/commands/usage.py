"""`wai logs --usage`: the usage ledger (tokens, cost, neurons) by day or by model, with today's share
of Workers AI's free neurons and of the `daily_neurons` budget, when one is set."""

from __future__ import annotations

import json
from typing import TextIO, cast

from wai.errors import EXIT_OK, UsageError
from wai.notices import Notifier
from wai.pricing import FREE_NEURONS_PER_DAY, budget_text, usd_text
from wai.store.database import Store, db_path
from wai.store.ledger import GroupBy, Ledger, Totals, free_share, ledger, neurons_today, parse_since
from wai.terminal.safe_text import for_terminal, json_for_terminal

_HEADS = ("turns", "in", "cached", "out", "cost", "neurons")


def run_usage(since_text: str, by: str, *, as_json: bool, out: TextIO, notifier: Notifier) -> int:
    if by not in ("day", "model"):
        raise UsageError(f"--by must be day or model, got {by!r}")
    since = parse_since(since_text)
    from wai.settings import load_user_config

    budget = load_user_config().daily_neurons()
    path = db_path()
    if path.exists():
        with Store.for_reading(path, notifier.warn) as store:
            found = ledger(store, since, cast(GroupBy, by))
            today = neurons_today(store)
    else:
        found, today = Ledger(since=since, by=cast(GroupBy, by)), 0.0
    if as_json:
        document = {
            "since": found.since.isoformat(timespec="seconds"),
            "by": by,
            "rows": [{by: key, **totals.as_dict()} for key, totals in found.rows.items()],
            "total": found.total.as_dict(),
            "today": {
                "neurons": round(today, 6),
                "free_neurons": FREE_NEURONS_PER_DAY,
                "free_share": round(free_share(today), 6),
                "daily_neurons": budget,
            },
        }
        out.write(json_for_terminal(json.dumps(document, indent=2, ensure_ascii=False), out) + "\n")
        return EXIT_OK
    out.write(for_terminal(_table(found), out))
    line = (
        f"today (UTC): {today:,.1f} of the {FREE_NEURONS_PER_DAY:,} free Workers AI neurons "
        f"({free_share(today):.1%})"
    )
    if budget is not None:
        line += f"; daily_neurons {budget_text(budget)} ({today / budget:.1%} spent)"
    out.write(line + "\n")
    if found.total.unpriced_turns:
        count = found.total.unpriced_turns
        notifier.info(
            "1 turn of a model without a price adds tokens but no cost"
            if count == 1
            else f"{count} turns of models without a price add tokens but no cost"
        )
    return EXIT_OK


def _row(key: str, totals: Totals) -> tuple[str, ...]:
    cost = usd_text(totals.usd) if totals.turns > totals.unpriced_turns else "-"
    neurons = f"{totals.neurons:,.1f}" if totals.billed_turns else "-"
    return (
        key,
        f"{totals.turns:,}",
        f"{totals.prompt_tokens:,}",
        f"{totals.cached_tokens:,}",
        f"{totals.completion_tokens:,}",
        cost,
        neurons,
    )


def _table(found: Ledger) -> str:
    since = found.since.isoformat(sep=" ", timespec="minutes")[:16] + " UTC"  # year 1 as 0001
    if not found.rows:
        return f"no turns logged since {since}\n"
    rows: list[tuple[str, ...]] = [(found.by, *_HEADS)]
    rows += [_row(key, totals) for key, totals in found.rows.items()]
    rows.append(_row("total", found.total))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"usage since {since}, by {found.by}"]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"

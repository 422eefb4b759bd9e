"""`daily_neurons` in config.toml: a budget of Workers AI neurons a UTC day, checked before a turn.

A turn whose worst case (the counted prompt plus all of max_tokens, at the model's price) would
carry today's spending past the budget is warned of; once the budget is spent, a turn is refused
(exit 2) unless the user insists (`--force`). Today's spending is what the transcript logged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from wai.errors import ConfigError, UsageError
from wai.pricing import budget_text, cost_of

if TYPE_CHECKING:
    from wai.backends.request import Request
    from wai.settings import UserConfig


def spent_today() -> float:
    """The neurons the logged turns spent today (UTC); 0 before anything was logged."""
    from wai.store.database import Store, db_path
    from wai.store.ledger import neurons_today

    path = db_path()
    if not path.exists():
        return 0.0
    with Store(path, read_only=True) as store:
        return neurons_today(store)


def check_daily_neurons(
    request: Request,
    config: UserConfig | None,
    *,
    force: bool,
    warn: Callable[[str], None],
    spent: Callable[[], float] = spent_today,
) -> None:
    """Warn of a turn that may pass the budget; refuse one once it is spent (UsageError), unless
    `force`. Only for a backend that bills in neurons (the caller asks); nothing without a budget."""
    check_daily_neurons_of((request,), config, force=force, warn=warn, spent=spent)


def check_daily_neurons_of(
    requests: Sequence[Request],
    config: UserConfig | None,
    *,
    force: bool,
    warn: Callable[[str], None],
    spent: Callable[[], float] = spent_today,
) -> None:
    """The same check for the requests of one command together (a batch's records): their worst
    cases summed against what is left of today's budget."""
    budget = config.daily_neurons() if config is not None else None
    if budget is None or not requests:
        return
    limit = budget_text(budget)
    where = f"daily_neurons in {config.path}" if config is not None else "daily_neurons"
    try:
        today = spent()
    except ConfigError as unreadable:  # a newer wai's logs.db, a damaged one: the turn goes on
        warn(f"today's use cannot be read ({unreadable.message}): the budget of {limit} is not checked")
        return
    if today >= budget:
        if not force:
            raise UsageError(
                f"today's Workers AI use, {today:,.1f} neurons, has reached the budget of {limit} "
                f"({where}); nothing was sent",
                hint="--force sends it anyway; the day starts again at 00:00 UTC",
            )
        warn(f"today's use ({today:,.1f} neurons) is past the budget of {limit}; sending (--force)")
        return
    unpriced = sorted({request.model.id for request in requests if request.model.price is None})
    if unpriced:
        warn(
            f"{', '.join(unpriced)} has no price in the catalog: what "
            f"{'this turn' if len(requests) == 1 else 'this batch'} spends cannot be told "
            f"against the budget of {limit} neurons"
        )
        return
    worst = sum(
        cost_of(price, request.prompt_tokens or 0, request.max_tokens).neurons
        for request in requests
        if (price := request.model.price) is not None
    )
    if today + worst <= budget:
        return
    if len(requests) == 1:
        request = requests[0]
        what = (
            f"this turn may spend up to {worst:,.1f} neurons ({request.prompt_tokens or 0} prompt "
            f"tokens and max_tokens {request.max_tokens})"
        )
    else:
        prompts = sum(request.prompt_tokens or 0 for request in requests)
        what = (
            f"this batch of {len(requests)} records may spend up to {worst:,.1f} neurons ({prompts} "
            "prompt tokens and each record's max_tokens)"
        )
    warn(f"{what}; with {today:,.1f} spent today that could pass the budget of {limit} ({where})")

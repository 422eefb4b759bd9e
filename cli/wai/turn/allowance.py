"""`daily_neurons` in config.toml: a budget of Workers AI neurons a UTC day, checked before a turn.

A turn whose worst case (the counted prompt plus all of max_tokens, at the model's price) would
carry today's spending past the budget is warned of; once the budget is spent, a turn is refused
(exit 2) unless the user insists (`--force`). Today's spending is what the transcript logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from wai.errors import UsageError
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
    budget = config.daily_neurons() if config is not None else None
    if budget is None:
        return
    today = spent()
    limit = budget_text(budget)
    where = f"daily_neurons in {config.path}" if config is not None else "daily_neurons"
    if today >= budget:
        if not force:
            raise UsageError(
                f"today's Workers AI use, {today:,.1f} neurons, has reached the budget of {limit} "
                f"({where}); nothing was sent",
                hint="--force sends it anyway; the day starts again at 00:00 UTC",
            )
        warn(f"today's use ({today:,.1f} neurons) is past the budget of {limit}; sending (--force)")
        return
    price = request.model.price
    if price is None:
        warn(
            f"{request.model.id} has no price in the catalog: what this turn spends cannot be told "
            f"against the budget of {limit} neurons"
        )
        return
    prompt = request.prompt_tokens or 0
    worst = cost_of(price, prompt, request.max_tokens).neurons
    if today + worst > budget:
        warn(
            f"this turn may spend up to {worst:,.1f} neurons ({prompt} prompt tokens and "
            f"max_tokens {request.max_tokens}); with {today:,.1f} spent today that could pass the "
            f"budget of {limit} ({where})"
        )

"""What a provider's server told of a model's windows, or that it told none, kept for later runs.

Below both the model resolution (models.py) and the server's counter (count.py): each learns
windows, and each says whether the ones at hand are only assumed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from wai.catalog.entries import ModelSpec
from wai.providers import STORE_PREFIX, Provider
from wai.store.catalogs import ModelFacts, RefreshedCatalog, StoredCatalogError, load

WINDOWS_UNKNOWN = "the server, at first use"  # a spec's `source` until its windows are read
ASSUMED_CONTEXT = 4096  # a model whose server tells no context is held to this much
ASSUMED_STORED = " (no context told: assumed)"  # after the store's path, in a spec's `source`


def store_name(provider: Provider) -> str:
    return f"{STORE_PREFIX}{provider.name}"


def windows_assumed(spec: ModelSpec) -> bool:
    """Whether a provider model's windows are the assumption, its server having told none."""
    return spec.provider is not None and spec.assumed_windows is not None


def remember(provider: Provider, learned: ModelFacts) -> None:
    """Keep what a first use read from the server, as a refresh of that one model would: later
    runs ask the server nothing before the count."""
    import contextlib

    from wai.store.catalogs import save

    try:
        current = load(store_name(provider))
    except StoredCatalogError:
        current = None
    kept = tuple(m for m in (current.models if current is not None else ()) if m.id != learned.id)
    with contextlib.suppress(OSError):  # a home that cannot be written costs the next run a probe
        save(
            RefreshedCatalog(
                name=store_name(provider),
                fetched_at=current.fetched_at if current is not None else datetime.now(UTC),
                source=provider.base_url,
                models=(*kept, learned),
            )
        )

"""A provider's models: their windows from a catalog entry, the last refresh, or the server itself.

`wai models --refresh` asks each provider GET {base_url}/models and each model's context
(`server_context`: vLLM's max_model_len, llama-server's /props, ollama's /api/show), and keeps
the answer in `$WAI_HOME/catalogs/provider-NAME.json` like the Workers AI refresh. A model is
then resolved, in this order, from an entry `[models."NAME:MODEL"]` of models.toml (windows set
by hand), the stored refresh, or, at its first use, the server (and failing all that, a
conservative assumption said in a warning).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from wai.backends.openai.learned import (
    ASSUMED_CONTEXT,
    ASSUMED_STORED,
    WINDOWS_UNKNOWN,
    remember,
    store_name,
    windows_assumed,
)
from wai.catalog.entries import AssumedWindows, Catalog, ModelSpec, user_catalog_path
from wai.errors import BackendError, ConfigError, WaiError
from wai.providers import Provider
from wai.store.catalogs import (
    ImplausibleFigure,
    ModelFacts,
    RefreshedCatalog,
    StoredCatalogError,
    load,
    output_window,
    tokens_figure,
)

if TYPE_CHECKING:
    from wai.backends.openai.client import ProviderClient
    from wai.notices import Notifier


def windows_spec(
    model_id: str,
    provider: Provider,
    context: int,
    *,
    source: str,
    engine: str | None,
    told: tuple[str, ...] = (),
    assumed: AssumedWindows | None = None,
) -> ModelSpec:
    """A provider model whose context (prompt and reply together) is `context` tokens; `told`:
    the other windows the server gave (`context_window:N`, `max_output:N`), else derived."""
    windows = {k: int(v) for k, _, v in (c.partition(":") for c in told) if v.isdigit()}
    return ModelSpec(
        id=model_id,
        context_window=min(context, windows.get("context_window", context)),
        max_output=min(context, windows.get("max_output", output_window(context))),
        total_context=context,
        remote=False,
        source=source,
        provider=provider.name,
        engine=engine,
        assumed_windows=assumed,
    )


def told_windows(facts: ModelFacts | None) -> tuple[str, ...]:
    """The windows beyond the context that a refresh kept (wai serve lists all three)."""
    if facts is None:
        return ()
    return tuple(c for c in facts.capabilities if c.startswith(("context_window:", "max_output:")))


def provider_spec(provider: Provider, model: str, catalog: Catalog) -> ModelSpec:
    """The spec of NAME:MODEL: a catalog entry's windows, else the last refresh's, else an
    assumption (`assumed_windows` "now") until the server is asked (`learn_windows`)."""
    model_id = f"{provider.name}:{model}"
    entry = catalog.models.get(model_id)
    facts = stored_facts(provider).get(model)
    engine = _engine(facts)
    if entry is not None:
        return replace(entry, provider=provider.name, remote=False, engine=engine)
    if facts is not None and facts.window is not None:
        from wai.store.catalogs import store_path

        return windows_spec(
            model_id,
            provider,
            facts.window,
            source=str(store_path(store_name(provider))),
            engine=engine,
            told=told_windows(facts),
        )
    if facts is not None:
        # Asked before (a refresh, or an earlier run's first use): it tells no context. Assumed
        # again without asking; `wai models` shows it as assumed.
        from wai.store.catalogs import store_path

        return windows_spec(
            model_id,
            provider,
            ASSUMED_CONTEXT,
            source=f"{store_path(store_name(provider))}{ASSUMED_STORED}",
            engine=engine,
            assumed="before",
        )
    return windows_spec(
        model_id, provider, ASSUMED_CONTEXT, source=WINDOWS_UNKNOWN, engine=engine, assumed="now"
    )


def learn_windows(spec: ModelSpec, client: ProviderClient) -> ModelSpec:
    """`spec` with the windows its server tells at its first use, kept for later runs; `spec`
    itself, windows assumed, when the server tells none."""
    found, learned = live_windows(spec, client)
    if learned is not None:
        remember(client.provider, learned)
    return found


def assumed_warnings(spec: ModelSpec) -> list[str]:
    """The warning for a provider model whose server, asked just now, told no context ([] else)."""
    if spec.provider is None or spec.assumed_windows != "now":
        return []
    return [
        f"{spec.provider} tells no context length for {spec.served_name}: assumed {ASSUMED_CONTEXT} "
        f'tokens; set context_window and max_output under [models."{spec.id}"] in {user_catalog_path()}'
    ]


def _engine(facts: ModelFacts | None) -> str | None:
    if facts is None:
        return None
    return next((c.split(":", 1)[1] for c in facts.capabilities if c.startswith("engine:")), None)


def stored_facts(provider: Provider) -> dict[str, ModelFacts]:
    """The last refresh of `provider`, by model; {} when none (or when it cannot be read)."""
    try:
        refreshed = load(store_name(provider))
    except StoredCatalogError:
        return {}
    return {m.id: m for m in refreshed.models} if refreshed is not None else {}


def live_windows(spec: ModelSpec, client: ProviderClient) -> tuple[ModelSpec, ModelFacts | None]:
    """Windows read from the server for a model neither the catalog nor a refresh knows (`spec`
    itself, windows assumed, when it tells none), and what is worth keeping for later runs (None
    when the server could not even list its models: the next run asks again)."""
    from wai.backends.openai.client import listed_models
    from wai.backends.openai.context import listed_context, server_context

    provider = client.provider
    try:
        listed = listed_models(client)
    except BackendError:  # a refused key (ConfigError) stops everything at once
        listed = []
    ids = [entry["id"] for entry in listed]
    if ids and spec.served_name not in ids:
        # Nothing is sent to a server for a model it says it does not have.
        shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
        raise ConfigError(
            f"{provider.name} does not serve the model {spec.served_name!r}; "
            f"it serves (GET /models): {shown}",
            hint=f"use -m {provider.name}:MODEL with one of them; `wai models --refresh` keeps the list",
        )
    told: tuple[str, ...] = ()
    context: int | None
    engine: str | None
    entry = next((e for e in listed if e["id"] == spec.served_name), None)
    try:
        found_listed = listed_context(entry) if entry is not None else None
        if found_listed is not None:
            context, engine, told = found_listed
        else:
            context, engine = server_context(client, spec.served_name, listed)
        if context is not None:
            tokens_figure("context", context)
    except ImplausibleFigure as exc:
        raise ConfigError(
            f"{provider.name} lists {spec.served_name} with {exc}",
            hint=f'set context_window and max_output under [models."{spec.id}"] in {user_catalog_path()}',
        ) from None
    capabilities = ((f"engine:{engine}",) if engine else ()) + told
    learned = ModelFacts(id=spec.served_name, window=context, capabilities=capabilities) if ids else None
    if context is None:
        return spec, learned
    found = windows_spec(
        spec.id, provider, context, source=f"{provider.base_url} ({engine})", engine=engine, told=told
    )
    if learned is None:  # no list, but the server told the context all the same
        learned = ModelFacts(id=spec.served_name, window=context, capabilities=capabilities)
    return replace(found, capabilities=spec.capabilities), learned


def refresh(provider: Provider) -> RefreshedCatalog:
    """Every model `provider` lists, with the context its server tells. Raises a WaiError."""
    from wai.backends.openai.client import ProviderClient

    client = ProviderClient(provider)
    try:
        return _refresh(client)
    finally:
        client.close()


def _refresh(client: ProviderClient) -> RefreshedCatalog:
    from wai.backends.openai.client import listed_models
    from wai.backends.openai.context import listed_context, ollama_context, server_context

    provider = client.provider
    listed = listed_models(client)
    facts: list[ModelFacts] = []
    refused: list[str] = []
    shared: tuple[int | None, str | None] | None = None  # llama-server: one context for its models
    for entry in listed:
        model = entry["id"]
        context: int | None
        engine: str | None
        told: tuple[str, ...] = ()
        try:
            found = listed_context(entry)
            if found is not None:
                context, engine, told = found
            elif shared is not None and shared[1] == "llama-server":
                context, engine = shared
            elif shared is not None and shared[1] == "ollama":
                context, engine = ollama_context(client, model)
            else:
                try:
                    context, engine = server_context(client, model)
                except WaiError:
                    context, engine = None, None
                shared = (context, engine)
            if context is not None:
                tokens_figure("context", context)  # a /props or num_ctx no model has
        except ImplausibleFigure as exc:
            refused.append(f"{provider.name}:{model}: {provider.name} lists it with {exc}")
            continue
        facts.append(
            ModelFacts(
                id=model, window=context, capabilities=((f"engine:{engine}",) if engine else ()) + told
            )
        )
    return RefreshedCatalog(
        name=store_name(provider),
        fetched_at=datetime.now(UTC),
        source=provider.base_url,
        models=tuple(facts),
        refused=tuple(refused),
    )


def provider_completions(providers: dict[str, Provider], known: set[str]) -> list[tuple[str, str]]:
    """What `/model` in `wai chat` completes for providers: each refreshed NAME:MODEL with its
    windows, and NAME: alone for a provider never refreshed (any MODEL after it is taken)."""
    found: list[tuple[str, str]] = []
    for provider in providers.values():
        facts = stored_facts(provider)
        for model, fact in facts.items():
            name = f"{provider.name}:{model}"
            if name not in known:
                window = f"context {fact.window}" if fact.window else "context unknown"
                found.append((name, f"{window} · {provider.name}"))
        if not facts:
            found.append((f"{provider.name}:", f"a model of {provider.base_url}"))
    return found


def refresh_providers(providers: dict[str, Provider], notifier: Notifier) -> WaiError | None:
    """`wai models --refresh` for every provider; each failure told, the last one returned."""
    from wai.store.catalogs import save

    failure: WaiError | None = None
    for provider in providers.values():
        try:
            refreshed = refresh(provider)
            path = save(refreshed)
        except WaiError as error:
            notifier.error(f"cannot refresh provider {provider.name}: {error}; its list is the one wai had")
            failure = error
            continue
        for refusal in refreshed.refused:
            notifier.warn(f"{refusal}; left out")
        told = sum(1 for m in refreshed.models if m.window is not None)
        notifier.info(
            f"read {len(refreshed.models)} model{'' if len(refreshed.models) == 1 else 's'} from "
            f"{provider.name} ({provider.base_url}), "
            f"{told} with their context; kept in {path}"
        )
    return failure


def provider_rows(providers: dict[str, Provider], catalog: Catalog) -> list[dict[str, object]]:
    """Every provider model wai knows windows for (refreshed, or an entry in models.toml)."""
    rows: list[dict[str, object]] = []
    for provider in providers.values():
        names = {f"{provider.name}:{model}" for model in stored_facts(provider)}
        names |= {model_id for model_id in catalog.models if model_id.startswith(f"{provider.name}:")}
        for name in sorted(names):
            spec = provider_spec(provider, name.split(":", 1)[1], catalog)
            rows.append(
                {
                    "id": spec.id,
                    "provider": provider.name,
                    "base_url": provider.base_url,
                    "context_window": spec.context_window,
                    "max_output": spec.max_output,
                    "total_context": spec.total_context,
                    "engine": engine_name(spec),
                    "windows_from": "not told by the server: assumed"
                    if windows_assumed(spec)
                    else spec.source,
                }
            )
    return rows


def engine_name(spec: ModelSpec) -> str | None:
    return spec.engine

"""What the user typed after -m (or nothing), as far as the catalog knows it: the default model's
name, and the catalog's answer for a name no backend claimed (backends/registry.py asks them)."""

from __future__ import annotations

import os
from pathlib import Path

from wai.catalog.entries import Catalog, ModelSpec
from wai.errors import ConfigError, UsageError
from wai.settings import Credentials, UserConfig

DEFAULT_REMOTE_MODEL = "@cf/meta/llama-3.1-8b-instruct-fp8"
BUILTIN_MODEL = "smollm2-135m-instruct"


def default_model_name(config: UserConfig, credentials: Credentials | None) -> str:
    """WAI_MODEL, else config.toml's default_model, else with credentials a model the server
    serves (see served_default), else the built-in."""
    chosen = os.environ.get("WAI_MODEL") or config.text("default_model")
    if chosen:
        return chosen
    if credentials is None:
        return BUILTIN_MODEL
    served = served_default(credentials)
    return served[0] if served is not None else DEFAULT_REMOTE_MODEL


def served_default(credentials: Credentials) -> tuple[str, str] | None:
    """The default model of a server that is not Cloudflare's (a `wai serve`, a proxy), and where
    its list was read: DEFAULT_REMOTE_MODEL when the last `wai models --refresh` listed it, else
    the first listed model wai can use (a window published, not retired). None on Cloudflare's
    own API, where the default is DEFAULT_REMOTE_MODEL; when the last refresh read another
    server's list; and when no refresh listed one: another server serves its own models, and
    Cloudflare's default is rarely among them."""
    from wai.catalog.retired import is_cloudflare

    if is_cloudflare(credentials.base_url):
        return None
    from datetime import UTC, datetime

    from wai.catalog.entries import REFRESHED_LISTS
    from wai.store import catalogs

    today = datetime.now(UTC).date().isoformat()
    try:
        refreshed = catalogs.load(REFRESHED_LISTS[0])
    except catalogs.StoredCatalogError:  # `wai models` says so; the usual default stands
        return None
    if refreshed is None or not _same_server(refreshed.source, credentials.base_url):
        # A list read from another server (the base URL changed since) says nothing of this one.
        return None
    usable = [
        m.id
        for m in refreshed.models
        if m.window is not None and (m.retirement is None or m.retirement > today)
    ]
    if not usable:
        return None
    return (DEFAULT_REMOTE_MODEL if DEFAULT_REMOTE_MODEL in usable else usable[0]), refreshed.source


def _same_server(listed_from: str, base_url: str) -> bool:
    """Whether a refresh read from `listed_from` (shown without a password) is `base_url`'s list."""
    from urllib.parse import urlsplit

    def key(url: str) -> tuple[str, str | None, int | None, str]:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        return parts.scheme.lower(), parts.hostname, port, parts.path.rstrip("/")

    return key(listed_from) == key(base_url)


def looks_like_gguf_path(name: str) -> bool:
    return name.lower().endswith(".gguf") or (os.sep in name and Path(name).expanduser().exists())


def chosen_name(
    name: str | None, config: UserConfig, credentials: Credentials | None
) -> tuple[str, str | None]:
    """The model's name (the default one when -m named none), and what chose it when not -m
    (WAI_MODEL, default_model in config.toml), for the error that says it is unknown."""
    if name is not None and not name.strip():
        raise UsageError("-m names no model", hint="`wai models` lists the catalog")
    if name:
        return name, None
    chosen_by = None
    if os.environ.get("WAI_MODEL"):
        chosen_by = "WAI_MODEL"
    elif config.text("default_model"):
        chosen_by = f"default_model in {config.path}"
    return default_model_name(config, credentials), chosen_by


def unclaimed(
    name: str, entry: ModelSpec | None, catalog: Catalog, config: UserConfig, chosen_by: str | None
) -> ModelSpec:
    """The catalog's model `entry` named `name` (None: the catalog has none), when no backend
    claimed the name; raises the error that says why there is none."""
    if entry is not None:
        if entry.gguf is None and not entry.remote and provider_like(entry.id):
            raise _no_such_provider(entry.id, config, entry=True)
        return entry
    if provider_like(name):
        raise _no_such_provider(name, config, set_by=chosen_by)
    if chosen_by is not None:
        raise ConfigError(
            f"unknown model '{name}', set by {chosen_by}", hint="`wai models` lists the catalog"
        )
    return catalog.get(name)  # raises the "unknown model" error


def provider_like(name: str) -> bool:
    """NAME:MODEL whose NAME could be a provider's (a typo, or a table since removed)."""
    from wai.providers import valid_name

    prefix, colon, model = name.partition(":")
    return bool(colon and model) and valid_name(prefix)


def _no_such_provider(
    name: str, config: UserConfig, *, entry: bool = False, set_by: str | None = None
) -> ConfigError:
    prefix = name.partition(":")[0]
    configured = sorted(config.providers())
    what = f"the models.toml entry '{name}'" if entry else f"unknown model '{name}'"
    by = f", set by {set_by}" if set_by else ""
    if configured:
        return ConfigError(
            f"{what}{by}: {prefix} is not a configured provider (configured: {', '.join(configured)})",
            hint=f"add a [providers.{prefix}] table to {config.path}, or `wai models` for the catalog",
        )
    return ConfigError(
        f"{what}{by}: {prefix} is not a configured provider, and none is",
        hint=f"add a [providers.{prefix}] table to {config.path}, or `wai models` for the catalog",
    )

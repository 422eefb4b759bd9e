"""Models Workers AI has retired: whether a base URL is Cloudflare's own, and the refusal.

Cloudflare answers a retired model with HTTP 410, code 5028. Against Cloudflare's own API wai
knows that before sending, from the catalog's `retirement` day; against any other base URL (a
proxy, a local server that speaks the protocol) the server decides. Either way the user gets the
same line: since when, what to use instead, and that the local backend still runs it when it can.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from wai.catalog.entries import ModelSpec
from wai.errors import ConfigError

CLOUDFLARE_API_HOSTS = ("api.cloudflare.com", "gateway.ai.cloudflare.com")


def is_cloudflare(base_url: str) -> bool:
    """Whether requests go to Cloudflare itself (its API, or its AI Gateway in front of it)."""
    try:
        host = urlsplit(base_url).hostname or ""
    except ValueError:
        return False
    return host.lower().rstrip(".") in CLOUDFLARE_API_HOSTS


def retired_error(spec: ModelSpec, *, day: str | None = None, said: str | None = None) -> ConfigError:
    """The refusal of a retired model: exit 2, one line.

    `day`: the retirement day when the server named one and the catalog has none; `said`: what the
    server answered (HTTP status, code, message), for a refusal that came from it.
    """
    from wai.catalog.entries import load_catalog

    when = spec.retirement or day
    since = f" on {when}" if when else ""
    server = f" ({said})" if said else ""
    successor = load_catalog().successor_for(spec)
    instead = f"; use {successor} instead" if successor else "; `wai models --refresh` lists current models"
    local = ""
    path = spec.gguf_path()
    if path is not None:
        place = "its file is there" if path.is_file() else f"put {path.name} in {path.parent}"
        local = f", or run it on the local backend: --backend local ({place})"
    return ConfigError(f"Workers AI retired {spec.id}{since}{server}{instead}{local}")

"""The account's text-generation models, read from Workers AI's model search.

    GET {base}/accounts/{account_id}/ai/models/search?task=Text Generation&page=N&per_page=50

Every page is read until a short one: the server may cap `per_page` below what was asked, so a
page is short when it holds fewer results than the server's own page size (`result_info.per_page`,
else the largest page seen so far), or none at all, or when `result_info.total_count` results
have arrived. Each result's `properties` (a list of `{property_id, value}`, the value usually a
string) give its published window, its planned retirement and its capabilities.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from wai import __version__
from wai.backends.http.errors import (
    Scrubber,
    body_text,
    display_url,
    error_for,
    one_line,
    parse_error,
    url_secrets,
)
from wai.catalog.entries import model_id_problem
from wai.errors import BackendError, ConfigError
from wai.pricing import price_from_listing
from wai.settings import Credentials
from wai.store.catalogs import (
    ImplausibleFigure,
    ModelFacts,
    RefreshedCatalog,
    check_parts,
    parse_day,
    tokens_figure,
)

LIST_NAME = "workers-ai"
TASK = "Text Generation"
PER_PAGE = 50  # what wrangler asks for
MAX_PAGES = 200  # an endless listing (or one that ignores `page`) must not keep wai reading forever
# Properties that are facts of their own, not capability flags.
_NOT_CAPABILITIES = frozenset(
    {
        "price",
        "context_window",
        "max_input_tokens",
        "max_total_tokens",
        "max_output_tokens",
        "planned_deprecation_date",
        "terms",
        "info",
    }
)
_TRUE = ("true", "yes", "1")


def refresh(
    credentials: Credentials, *, connect_timeout: float = 10.0, read_timeout: float = 60.0
) -> RefreshedCatalog:
    """Every text-generation model the account can see. Raises a WaiError saying what failed."""
    import httpx

    credentials.check_sendable()
    scrub = Scrubber(credentials.api_token, *url_secrets(credentials.base_url))
    base_shown = display_url(credentials.base_url)
    account = quote(credentials.account_id, safe="")
    url = f"{credentials.base_url}/accounts/{account}/ai/models/search"
    timeout = httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
    )
    headers = {"Authorization": f"Bearer {credentials.api_token}", "User-Agent": f"wai/{__version__}"}
    found: dict[str, ModelFacts] = {}
    refused: dict[str, str] = {}
    seen: set[str] = set()
    page_size = 0
    with httpx.Client(headers=headers, timeout=timeout, follow_redirects=False) as client:
        for page in range(1, MAX_PAGES + 1):
            query = urlencode({"task": TASK, "page": page, "per_page": PER_PAGE})
            try:
                response = client.get(f"{url}?{query}")
            except httpx.TimeoutException:
                raise BackendError(
                    f"Workers AI did not answer the model search within {read_timeout:g} s; try again later"
                ) from None
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise ConfigError(
                    f"CLOUDFLARE_BASE_URL is not a usable address ({scrub(str(exc))}): now {base_shown}"
                ) from None
            except httpx.TransportError as exc:
                reason = one_line(scrub(str(exc))) or type(exc).__name__
                raise BackendError(f"cannot reach Workers AI at {base_shown} ({reason})") from None
            if response.status_code >= 300:
                error = parse_error(response.status_code, response.content, scrub)
                raise error_for(
                    error, model="the model search", account_id=credentials.account_id, base_url=base_shown
                )
            results, info = _page(response.content, scrub)
            names = {_name(raw) for raw in results}
            repeated = bool(names) and names <= seen  # the same page again: the server ignores `page`
            seen |= names
            for raw in results:
                try:
                    facts = model_facts(raw)
                except ImplausibleFigure as exc:
                    refused.setdefault(_name(raw), f"{_name(raw)}: the model list gives it {exc}")
                    continue
                if facts is not None and facts.id not in refused:
                    found.setdefault(facts.id, facts)
            page_size = max(page_size, len(results), _int(info.get("per_page")) or 0)
            total = _int(info.get("total_count"))
            if (
                not results
                or len(results) < page_size
                # A total below what the pages already held is wrong: the pages go on until a short one.
                or (total is not None and len(seen) <= total and page * page_size >= total)
                or repeated
            ):
                break
        else:
            # Whatever the pages held, the list goes on past them: kept, it would pass for the
            # whole list, and the models after the cut would be missing without a word.
            raise BackendError(
                f"Workers AI's model list did not end after {MAX_PAGES} pages ({len(seen)} models): "
                "the list was cut, so none of it is kept"
            )
    return RefreshedCatalog(
        name=LIST_NAME,
        fetched_at=datetime.now(UTC),
        source=base_shown,
        models=tuple(f for f in found.values() if f.id not in refused),
        refused=tuple(refused.values()),
    )


def _page(body: bytes, scrub: Scrubber) -> tuple[list[Any], Mapping[str, Any]]:
    import json

    try:
        data = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("result"), list):
        preview = one_line(scrub(body_text(body.decode("utf-8", errors="replace"))))
        raise BackendError(f"Workers AI sent a model list wai cannot read: {preview or '(empty)'}")
    info = data.get("result_info")
    return data["result"], info if isinstance(info, dict) else {}


def model_facts(raw: object) -> ModelFacts | None:
    """One search result as facts; None for what is not a text-generation model with a name, and
    ImplausibleFigure for one whose windows no model has (a 41-digit window, a word, an output
    window larger than the whole)."""
    if not isinstance(raw, dict):
        return None
    name = raw.get("name")
    # An id the catalog would refuse (control characters, empty segments) is dropped here, so
    # one odd entry never spoils the rest of the stored catalog. Ids without '@' stay: a server
    # that speaks the protocol (`wai serve`) lists its models under their own catalog ids.
    if not isinstance(name, str) or not name or model_id_problem(name) is not None:
        return None
    task = raw.get("task")
    task_name = task.get("name") if isinstance(task, dict) else task
    if isinstance(task_name, str) and task_name != TASK:
        return None
    properties = dict(_properties(raw.get("properties")))
    # Cloudflare's `context_window` is prompt and reply together. A server that also publishes the
    # older trio (`wai serve`: its context_window is then the input window) says each window
    # apart: max_total_tokens is the whole, max_input_tokens and max_output_tokens the parts.
    figures = {
        key: tokens_figure(key, properties.get(key))
        for key in ("max_total_tokens", "context_window", "max_input_tokens", "max_output_tokens")
    }
    window = figures["max_total_tokens"] or figures["context_window"]
    max_input, max_output = figures["max_input_tokens"], figures["max_output_tokens"]
    if window is not None:
        check_parts(window, {"max_input_tokens": max_input, "max_output_tokens": max_output})
    retirement: str | None = None
    if properties.get("planned_deprecation_date"):
        try:
            retirement = parse_day(properties["planned_deprecation_date"])
        except ValueError:
            retirement = None
    capabilities = sorted(
        key for key, value in properties.items() if key not in _NOT_CAPABILITIES and _flag(key, value)
    )
    description = raw.get("description")
    return ModelFacts(
        id=name,
        window=window,
        max_input=max_input if window is not None else None,
        max_output=max_output if window is not None else None,
        retirement=retirement,
        capabilities=tuple(capabilities),
        description=description if isinstance(description, str) else "",
        price=price_from_listing(properties.get("price")),
    )


def _name(raw: object) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) else repr(raw)


def _properties(raw: object) -> Iterable[tuple[str, object]]:
    if not isinstance(raw, list):
        return
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("property_id"), str):
            yield item["property_id"], item.get("value")


def _flag(key: str, value: object) -> bool:
    """A capability is set: "true" (or true); `reasoning_effort` comes as an object of choices."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return key == "reasoning_effort" and bool(value)


def _int(value: object) -> int | None:
    """A whole number from an int or a numeric string ("128000"), None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip().replace(",", ""))
        except ValueError:
            return None
    return None

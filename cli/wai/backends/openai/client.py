"""Small JSON requests to an OpenAI-compatible server: its model list, its tokenizer, its context.

One `ProviderClient` per provider holds one httpx connection pool, shared with the chat request
of the same run: the count before a turn opens the connection the chat request then reuses, so
exact counting costs a round trip and no second connection. Failures become one-line WaiErrors:
a server that cannot be reached, a key it refuses (naming the variable that holds it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wai import __version__
from wai.backends.http.errors import Scrubber, one_line, parse_error
from wai.errors import BackendError, ConfigError
from wai.providers import Provider

if TYPE_CHECKING:
    import httpx

# A small request (the model list, a count, a context) must end within this many seconds when
# neither the provider's `timeout` nor --read-timeout says otherwise: a count that never answers
# must not hold a turn for a minute.
SMALL_REQUEST_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    data: Any  # the decoded JSON, None when the body was not JSON
    raw: bytes


class ProviderClient:
    """Requests to one provider; `close` frees the connection pool. `timeout`: --read-timeout when
    the user gave it, which wins over the provider's own `timeout`."""

    def __init__(self, provider: Provider, *, timeout: float | None = None) -> None:
        self.provider = provider
        self.timeout = timeout or provider.timeout or SMALL_REQUEST_TIMEOUT
        if timeout is not None:
            self.timeout_from = "--read-timeout"
        elif provider.timeout is not None:
            self.timeout_from = f"timeout in {provider.where}"
        else:
            self.timeout_from = (
                f"wai's default for small requests; set timeout = SECONDS in {provider.where} to wait longer"
            )
        self._client: httpx.Client | None = None
        self._headers: dict[str, str] | None = None
        # A server may echo a request's headers in an error: their values are kept out like the key.
        self.scrub = Scrubber(*_keys(provider), *(value for _, value in provider.headers))

    def http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(
                headers={"User-Agent": f"wai/{__version__}"},
                follow_redirects=False,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT)),
            )
        return self._client

    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = self.provider.request_headers()
        return dict(self._headers)

    def call(self, method: str, url: str, body: object = None, *, key_route: bool = False) -> Answer:
        """One small request, over within `timeout` seconds however slowly the server writes.

        BackendError when the server cannot be reached or does not answer in time. `key_route`:
        a route every server of the API has (GET /models): a 401 or 403 there is a refused key
        (ConfigError). Elsewhere (a probe of /props, /tokenize...) the status is the caller's.
        """
        import time

        import httpx

        path = url.removeprefix(self.provider.root) or url
        started = time.monotonic()
        try:
            with self.http().stream(
                method, url, json=body if body is not None else None, headers=self.headers()
            ) as response:
                pieces: list[bytes] = []
                # httpx's timeouts are per read: a server trickling a byte at a time would
                # never trip them, so the whole answer gets one deadline.
                for piece in response.iter_bytes():
                    pieces.append(piece)
                    if time.monotonic() - started > self.timeout:
                        raise httpx.ReadTimeout("the deadline passed")
                content = b"".join(pieces)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError(
                f"the base_url of provider {self.provider.name} is not usable ({self.reason(exc)}); "
                f"check base_url in {self.provider.where}"
            ) from None
        except httpx.TimeoutException:
            raise BackendError(
                f"{self.provider.name} did not answer {method} {path} within {self.timeout:g} s "
                f"({self.timeout_from})"
            ) from None
        except httpx.TransportError as exc:
            raise BackendError(
                f"cannot reach {self.provider.name} at {self.provider.base_url} ({self.reason(exc)})"
            ) from None
        except httpx.HTTPError as exc:
            raise BackendError(
                f"{self.provider.name} sent an answer to {method} {path} that cannot be read "
                f"({self.reason(exc)})"
            ) from None
        try:
            data = json.loads(content.decode("utf-8", errors="replace"))
        except ValueError:
            data = None
        if key_route and response.status_code in (401, 403):
            raise self.key_refused(response.status_code, content)
        return Answer(response.status_code, data, content)

    def key_refused(self, status: int, raw: bytes) -> ConfigError:
        error = parse_error(status, raw, self.scrub)
        return ConfigError(
            f"{self.provider.name} refused the API key ({error.where()}); {self.provider.key_words()}"
        )

    def reason(self, exc: Exception) -> str:
        return one_line(self.scrub(str(exc))) or type(exc).__name__

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _keys(provider: Provider) -> tuple[str, ...]:
    import os

    if provider.api_key_env is None:
        return ()
    value = os.environ.get(provider.api_key_env, "").strip()
    return (value,) if value else ()


class NoModelsRoute(BackendError):
    """GET {base_url}/models is not there at all: base_url does not end where the API begins."""


def listed_models(client: ProviderClient) -> list[dict[str, Any]]:
    """GET {base_url}/models: the `data` list (each with `id`, and vLLM's `max_model_len`)."""
    answer = client.call("GET", f"{client.provider.base_url}/models", key_route=True)
    if answer.status >= 300:
        error = parse_error(answer.status, answer.raw, client.scrub)
        kind = NoModelsRoute if answer.status in (404, 405) else BackendError
        raise kind(f"{client.provider.name} did not list its models ({error.where()})")
    data = answer.data.get("data") if isinstance(answer.data, dict) else None
    if not isinstance(data, list):
        raise BackendError(f"{client.provider.name} sent a model list wai cannot read (GET /models)")
    from wai.catalog.entries import has_control_character

    # A name with a control character is no model's (Workers AI's listing drops them the same way):
    # kept, it would be a catalog row or a completion that breaks the line it is shown on.
    return [
        m
        for m in data
        if isinstance(m, dict)
        and isinstance(m.get("id"), str)
        and m["id"]
        and not has_control_character(m["id"])
    ]


@dataclass(frozen=True, slots=True)
class Listing:
    """What GET /models said, for the message about a model a server refused."""

    words: str  # the models it serves, in words, or why it could not tell
    route_missing: bool = False  # GET /models itself answered 404: base_url looks wrong
    lists_model: bool = False  # the refused model is among those listed


def models_in_words(client: ProviderClient, model: str = "") -> Listing:
    """What GET /models offers, for the message about a model the server does not serve."""
    try:
        ids = [m["id"] for m in listed_models(client)]
    except NoModelsRoute as error:
        return Listing(f"GET /models could not list what it serves ({error})", route_missing=True)
    except (BackendError, ConfigError) as error:
        return Listing(f"GET /models could not list what it serves ({error})")
    if not ids:
        return Listing("GET /models lists no models")
    shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
    return Listing(f"it serves (GET /models): {shown}", lists_model=model in ids)

"""OpenAI-compatible servers the user names in `$WAI_HOME/config.toml`, one `[providers.NAME]` each.

    [providers.vllm]
    type = "openai"                      # the only type there is
    base_url = "http://gpu-box:8000/v1"  # up to /v1: chat/completions and models are below it
    api_key_env = "VLLM_API_KEY"         # the variable that holds the key (never the key itself)
    headers = { "X-Team" = "nlp" }       # sent with every request
    timeout = 120                        # seconds to connect, and between two stream events
    tokenizer = "auto"                   # auto, vllm, llama-server or none: how prompts are counted
    session_affinity = false             # send x-session-affinity (prompt caching) per conversation

Their models are addressed as NAME:MODEL. Only a configured provider's name before the first
colon counts, so a catalog id that holds a colon keeps meaning what it meant. OPENAI_BASE_URL
(and OPENAI_API_KEY) define a provider named `openai` when config.toml has no such table.
Every bad value is one ConfigError naming the file, the table and the key.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wai.errors import ConfigError

TokenizerKind = Literal["auto", "vllm", "llama-server", "none"]
TOKENIZERS: tuple[TokenizerKind, ...] = ("auto", "vllm", "llama-server", "none")
KEYS = ("type", "base_url", "api_key_env", "headers", "timeout", "tokenizer", "session_affinity")
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers that frame the request or belong to one connection (RFC 9110 7.6.1): wai's HTTP
# client sets them for each request, and a second value breaks the request before it is sent.
RESERVED_HEADERS = (
    "content-length",
    "transfer-encoding",
    "content-type",
    "content-encoding",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
)
MAX_TIMEOUT = 86_400.0  # a day, as for --read-timeout
MIN_TIMEOUT = 0.1  # less would fail every request before a server could answer
# A provider's refreshed models are kept in $WAI_HOME/catalogs/{STORE_PREFIX}NAME.json.
STORE_PREFIX = "provider-"


@dataclass(frozen=True, slots=True)
class Provider:
    """One OpenAI-compatible server. `where` names its table in messages."""

    name: str
    base_url: str  # without a trailing slash
    api_key_env: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    tokenizer: TokenizerKind = "auto"
    where: str = ""
    session_affinity: bool = False  # send x-session-affinity, a conversation's prompt-caching key

    @property
    def root(self) -> str:
        """The server's root, where vLLM and llama-server keep /tokenize: base_url less its /v1."""
        return self.base_url.removesuffix("/v1")

    def api_key(self) -> str | None:
        """The key from its variable; ConfigError when the variable is named but empty."""
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env, "").strip()
        if not value:
            raise ConfigError(
                f"provider {self.name}: {self.api_key_env} is not set ({self.where} names it in api_key_env)",
                hint=f"export {self.api_key_env}=... or remove api_key_env",
            )
        for position, char in enumerate(value, 1):
            if not " " <= char <= "~":
                raise ConfigError(
                    f"the API key in {self.api_key_env} contains a character that cannot be sent in an "
                    f"HTTP header (U+{ord(char):04X}, character {position} of {len(value)})",
                    hint="copy the key again, without quotes or invisible characters",
                )
        return value

    def request_headers(self) -> dict[str, str]:
        """Every header a request to this provider carries: its own, then the key."""
        headers = dict(self.headers)
        key = self.api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def key_words(self) -> str:
        """Where the key comes from, for messages about a refused key."""
        if self.api_key_env is None:
            return f"no key is sent: set api_key_env in {self.where}"
        return f"check {self.api_key_env}"


def valid_name(name: str) -> bool:
    """Whether `name` could name a provider (what may go before the ':' of NAME:MODEL)."""
    return bool(_NAME.match(name))


def split_model(name: str, providers: dict[str, Provider]) -> tuple[Provider, str] | None:
    """NAME:MODEL as (provider, model) when NAME is a configured provider; None otherwise."""
    prefix, colon, model = name.partition(":")
    if not colon or prefix not in providers:
        return None
    return providers[prefix], model


def load_providers(
    path: Path, values: dict[str, object], *, skip_bad_environment: Callable[[str], None] | None = None
) -> dict[str, Provider]:
    """The providers of config.toml (`values` as read from `path`), then `openai` from the environment.

    `skip_bad_environment`: where a listing says that OPENAI_BASE_URL is unusable and goes on
    without that provider (anything that would send to it raises the ConfigError instead)."""
    raw = values.get("providers", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: 'providers' must be a table of [providers.NAME] tables")
    providers: dict[str, Provider] = {}
    for name, table in raw.items():
        where = f"{path}: [providers.{name}]"
        if not _NAME.match(name):
            raise ConfigError(
                f"{where}: the name must be letters, digits, '-', '_' or '.' (it goes before the ':' "
                "of NAME:MODEL)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        providers[name] = _provider(name, table, where, f"[providers.{name}] of {path}")
    if "openai" not in providers:
        try:
            from_env = _from_environment()
        except ConfigError as error:
            if skip_bad_environment is None:
                raise
            skip_bad_environment(f"{error}; the provider openai is left out")
            from_env = None
        if from_env is not None:
            providers["openai"] = from_env
    return providers


def _provider(name: str, table: dict[str, object], where: str, table_name: str) -> Provider:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where} key '{key}': {why}")

    if "api_key" in table:
        raise bad(
            "api_key",
            "the key itself is never written in the file; put it in a variable and name that with "
            'api_key_env = "VARIABLE"',
        )
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise bad(unknown[0], f"unknown key (known keys: {', '.join(KEYS)})")
    kind = table.get("type")
    if kind != "openai":
        raise bad(
            "type", f'must be "openai", got {kind!r}' if kind is not None else 'missing (type = "openai")'
        )
    base_url = table.get("base_url")
    if not isinstance(base_url, str) or not base_url.strip():
        raise bad("base_url", f"must be the server's address up to /v1, got {base_url!r}")
    problem = url_problem(base_url.strip())
    if problem is not None:
        raise bad("base_url", problem)
    key_env = table.get("api_key_env")
    if key_env is not None and (not isinstance(key_env, str) or not _VARIABLE.match(key_env)):
        raise bad("api_key_env", f"must be the name of an environment variable, got {key_env!r}")
    headers = table.get("headers", {})
    if not isinstance(headers, dict):
        raise bad("headers", f"must be a table of header names and values, got {headers!r}")
    pairs: list[tuple[str, str]] = []
    for header, value in headers.items():
        if not _HEADER_NAME.match(header):
            raise bad("headers", f"{header!r} is not a header name")
        if header.lower() == "authorization":
            raise bad("headers", "Authorization comes from api_key_env, never from the file")
        if header.lower() in RESERVED_HEADERS:
            raise bad(
                "headers",
                f"{header!r} is set by wai for each request (framing and connection headers cannot "
                "be given); remove it",
            )
        if not isinstance(value, str) or not all(" " <= c <= "~" for c in value):
            raise bad("headers", f"the value of {header!r} must be a string of visible ASCII")
        pairs.append((header, value))
    timeout = table.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT
    ):
        raise bad(
            "timeout",
            f"must be a number of seconds from {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}, got {timeout!r}",
        )
    tokenizer = table.get("tokenizer", "auto")
    if tokenizer not in TOKENIZERS:
        raise bad("tokenizer", f"must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    affinity = table.get("session_affinity", False)
    if not isinstance(affinity, bool):
        raise bad("session_affinity", f"must be true or false, got {affinity!r}")
    return Provider(
        name=name,
        session_affinity=affinity,
        base_url=base_url.strip().rstrip("/"),
        api_key_env=key_env,
        headers=tuple(pairs),
        timeout=float(timeout) if timeout is not None else None,
        tokenizer=tokenizer,  # type: ignore[arg-type]
        where=table_name,
    )


def _from_environment() -> Provider | None:
    base = os.environ.get("OPENAI_BASE_URL", "").strip()
    key_set = bool(os.environ.get("OPENAI_API_KEY", "").strip())
    if not base and not key_set:
        return None
    base = base or OPENAI_DEFAULT_BASE
    problem = url_problem(base)
    if problem is not None:
        raise ConfigError(f"OPENAI_BASE_URL: {problem}")
    return Provider(
        name="openai",
        base_url=base.rstrip("/"),
        api_key_env="OPENAI_API_KEY" if key_set else None,
        where="OPENAI_BASE_URL and OPENAI_API_KEY",
    )


def url_problem(url: str, up_to: str = "/v1") -> str | None:
    """Why `url` cannot be a provider's base URL (the address `up_to` its API's root); None when
    it can."""
    from urllib.parse import urlsplit

    if any(c.isspace() or not c.isprintable() for c in url):
        return f"{url!r} holds a space or a control character"
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url!r} is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000/v1)"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.rsplit("]", 1)[-1].endswith(":")):
        return f"{url!r} has no usable port (a number from 1 to 65535 after the host's ':')"
    if not all(c.isalnum() or c in "-._:" for c in parts.hostname):
        return f"{url!r} has no usable host name"
    if parts.username is not None or parts.password is not None:
        return "it holds a user name or password; put the key in a variable named by api_key_env"
    if parts.query or parts.fragment:
        return f"{url!r} has a query or fragment; give the address up to {up_to}"
    return None

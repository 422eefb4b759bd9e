"""Where wai keeps its files, and the credentials and defaults it reads from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wai.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from wai.providers import Provider

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"


def wai_home() -> Path:
    """`$WAI_HOME`, else the platform's user config folder (~/.config/wai on Linux)."""
    explicit = os.environ.get("WAI_HOME")
    if explicit:
        home = Path(explicit).expanduser()
        # Said once here: each file under it would otherwise fail on its own ("Not a directory"),
        # and a listing would find nothing logged.
        if home.exists() and not home.is_dir():
            raise ConfigError(
                f"WAI_HOME is {home}, which is a file, not a folder",
                hint="point WAI_HOME at a folder (it is made when missing), or unset it",
            )
        return home
    from platformdirs import user_config_dir

    return Path(user_config_dir("wai", appauthor=False))


def models_dir() -> Path:
    """Where models are installed and relative `gguf` paths resolved: `$WAI_MODELS_DIR`, else
    `$WAI_HOME/models` when WAI_HOME is set, else the platform's user data folder
    (~/.local/share/wai/models on Linux): models are data of hundreds of MB, not configuration."""
    explicit = os.environ.get("WAI_MODELS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("WAI_HOME"):
        return wai_home() / "models"
    from platformdirs import user_data_dir

    return Path(user_data_dir("wai", appauthor=False)) / "models"


def _former_models_dir() -> Path | None:
    """Where models went before they moved to the data folder: the config folder's `models`."""
    if os.environ.get("WAI_MODELS_DIR") or os.environ.get("WAI_HOME"):
        return None  # then the folder is the same as it always was
    return wai_home() / "models"


def model_file(relative: Path) -> Path:
    """A model file named relative to the models folder; a file only in the former folder is
    found there, so moving the default folder loses no one's downloads."""
    path = models_dir() / relative
    former = _former_models_dir()
    if former is not None and not path.exists() and (former / relative).is_file():
        return former / relative
    return path


def vocab_dir() -> Path:
    """Vocabulary-only GGUF files used to count tokens for remote models."""
    return wai_home() / "vocab"


@dataclass(frozen=True, slots=True)
class Credentials:
    account_id: str
    api_token: str
    base_url: str
    token_source: str = "CLOUDFLARE_API_TOKEN"

    def __repr__(self) -> str:  # the token must never reach a log or a traceback
        return f"Credentials(account_id={self.account_id!r}, api_token='***', base_url={self.base_url!r})"

    def check_sendable(self) -> None:
        """The token goes into an HTTP header, which holds visible ASCII only: a smart quote or a
        zero-width space pasted with it would fail deep in the HTTP client. Says where, never what."""
        for position, char in enumerate(self.api_token, 1):
            if not " " <= char <= "~":
                raise ConfigError(
                    f"the API token in {self.token_source} contains a character that cannot be sent "
                    f"in an HTTP header (U+{ord(char):04X}, character {position} of {len(self.api_token)})",
                    hint="copy the token again, without quotes or invisible characters",
                )


@dataclass(frozen=True, slots=True)
class UserConfig:
    """`$WAI_HOME/config.toml`: optional defaults; environment variables win over it."""

    path: Path
    values: dict[str, object]

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{self.path}: key '{key}' must be a string, got {value!r}")
        return value

    def daily_neurons(self) -> float | None:
        """`daily_neurons`: the most Workers AI neurons a UTC day may spend (None: no budget)."""
        value = self.values.get("daily_neurons")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e12:
            written = str(value).lower() if isinstance(value, bool) else repr(value)  # as TOML has it
            raise ConfigError(
                f"{self.path}: key 'daily_neurons' must be a number of neurons a day above 0 and "
                f"below 1,000,000,000,000 (10000 are free), got {written}"
            )
        return float(value)

    def providers(self, *, skip_bad_environment: Callable[[str], None] | None = None) -> dict[str, Provider]:
        """The OpenAI-compatible servers of `[providers.NAME]` (and OPENAI_BASE_URL), by name;
        `skip_bad_environment` (a listing's warning) leaves out an unusable OPENAI_BASE_URL."""
        from wai.providers import load_providers

        return load_providers(self.path, self.values, skip_bad_environment=skip_bad_environment)


CONFIG_KEYS = ("account_id", "api_token", "base_url", "default_model", "providers", "daily_neurons")


def load_user_config() -> UserConfig:
    from wai.toml_files import read_toml

    path = wai_home() / "config.toml"
    values = read_toml(path) or {}
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key '{unknown[0]}' (known keys: {', '.join(CONFIG_KEYS)})")
    return UserConfig(path=path, values=values)


def load_credentials(config: UserConfig | None = None) -> Credentials | None:
    """Credentials from CLOUDFLARE_ACCOUNT_ID / CLOUDFLARE_API_TOKEN, else config.toml; None if absent."""
    config = config or load_user_config()
    account_id = os.environ.get("CLOUDFLARE_ACCOUNT_ID") or config.text("account_id")
    api_token = os.environ.get("CLOUDFLARE_API_TOKEN")
    token_source = "CLOUDFLARE_API_TOKEN"
    if not api_token:
        api_token, token_source = config.text("api_token"), f"api_token in {config.path}"
    if os.environ.get("CLOUDFLARE_BASE_URL"):
        base_url, base_source = os.environ["CLOUDFLARE_BASE_URL"], "CLOUDFLARE_BASE_URL"
    else:
        base_url = config.text("base_url") or DEFAULT_BASE_URL
        base_source = f"base_url in {config.path}"
    _check_base_url(base_url, base_source)
    if not account_id or not api_token:
        return None
    return Credentials(
        account_id=account_id.strip(),
        api_token=api_token.strip(),
        base_url=base_url.rstrip("/"),
        token_source=token_source,
    )


def _check_base_url(url: str, source: str) -> None:
    """An http(s) URL without user or password: the token goes only in the Authorization header."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{source} is not an http(s) URL", hint=f"e.g. {DEFAULT_BASE_URL}")
    if parts.username is not None or parts.password is not None:
        # httpx would turn them into Basic auth and drop the API token's Bearer header.
        raise ConfigError(f"{source} holds a user name or password", hint="remove the user:password@ part")
    # The rest as for a provider's base_url: a port out of range, a space or a query would only
    # show as "connection refused" or a 404 after the retries.
    from wai.providers import url_problem

    problem = url_problem(url, up_to="/client/v4")
    if problem is not None:
        raise ConfigError(f"{source}: {problem}", hint=f"e.g. {DEFAULT_BASE_URL}")


MISSING_CREDENTIALS = (
    "Workers AI needs credentials: set CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN "
    "(or account_id and api_token in {path})"
)


def cannot_write(folder: Path) -> str | None:
    """Why no file can be written in `folder` (created if missing), None when one can.

    Tried by writing, since permission bits say nothing to root and nothing of a read-only mount.
    """
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".wai-probe-"):
            pass
    except OSError as exc:
        return os_reason(exc)
    return None


def os_reason(exc: OSError) -> str:
    """An OSError as a few lower-case words: `read-only file system`, `no space left on device`."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return reason[:1].lower() + reason[1:]

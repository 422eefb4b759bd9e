"""Which backend serves a model: remote when it is served and credentials exist, else local."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from wai.backends.base import Backend
from wai.catalog import ModelSpec
from wai.errors import ConfigError
from wai.settings import MISSING_CREDENTIALS, Credentials, wai_home

if TYPE_CHECKING:
    from wai.tokens import TokenCounter

BackendMode = Literal["auto", "remote", "local"]


@dataclass(frozen=True, slots=True)
class LocalOptions:
    gpu_layers: int | None = None
    threads: int | None = None
    debug: bool = False


def availability(spec: ModelSpec, credentials: Credentials | None) -> dict[str, str | None]:
    """For each backend, None when it can serve `spec` right now, else why not."""
    if not spec.remote:
        remote: str | None = "not served by Workers AI"
    elif credentials is None:
        remote = "no credentials (CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN)"
    elif retired_here(spec, credentials):
        remote = f"retired on Workers AI since {spec.retirement}"
    else:
        remote = None
    path = spec.gguf_path()
    if path is None:
        local: str | None = "no gguf in its catalog entry"
    elif not path.is_file():
        local = f"{path} is missing"
    else:
        local = None
    return {"remote": remote, "local": local}


def retired_here(spec: ModelSpec, credentials: Credentials) -> bool:
    """Retired, and asked of Cloudflare itself: another server (a proxy, a local one) decides."""
    from wai.retired import is_cloudflare

    return spec.retired() and is_cloudflare(credentials.base_url)


def choose_backend_name(spec: ModelSpec, mode: BackendMode, credentials: Credentials | None) -> str:
    missing_credentials = MISSING_CREDENTIALS.format(path=wai_home() / "config.toml")
    if mode == "remote":
        if not spec.remote:
            raise ConfigError(f"{spec.id} is not served by Workers AI", hint="use --backend local")
        if credentials is None:
            raise ConfigError(missing_credentials)
        if retired_here(spec, credentials):
            from wai.retired import retired_error

            raise retired_error(spec)
        return "remote"
    if mode == "local":
        if spec.gguf is None:
            raise ConfigError(
                f"{spec.id} has no local weights",
                hint=f'add gguf = "FILE.gguf" to its entry in {wai_home() / "models.toml"}',
            )
        return "local"
    reasons = availability(spec, credentials)
    if reasons["remote"] is None:
        return "remote"
    if reasons["local"] is None or not spec.remote:
        return "local"
    if credentials is not None and retired_here(spec, credentials):
        from wai.retired import retired_error

        raise retired_error(spec)
    if spec.gguf is None:
        raise ConfigError(missing_credentials)
    raise ConfigError(f"{missing_credentials}, or put its weights at {spec.gguf_path()}")


def windows_for(spec: ModelSpec, backend_name: str) -> ModelSpec:
    """The windows a run on `backend_name` plans with: locally, never beyond the file's trained context."""
    if backend_name != "local":
        return spec
    from wai.backends.llama import windows_on_file

    return windows_on_file(spec)


def _stderr_line(text: str) -> None:
    from wai.notices import Notifier

    Notifier().debug(text)  # debug lines quote servers and prompts: their text, never their controls


class Backends:
    """Builds each backend once per process, so a loaded local model is reused."""

    def __init__(self, credentials: Credentials | None, local: LocalOptions, *, debug: bool = False) -> None:
        self.credentials = credentials
        self.local_options = local
        self.debug = debug
        self._made: dict[str, Backend] = {}

    def counter(self, spec: ModelSpec, name: str) -> TokenCounter:
        """The counter for a run on backend `name`: locally, the very model that will answer.

        Counting with the loaded model saves loading the file a second time for its vocabulary.
        """
        if name == "local":
            from wai.backends.llama import LlamaBackend

            backend = self.get(name)
            if isinstance(backend, LlamaBackend):
                return backend.counter(spec)
        from wai.tokens import counter_for

        return counter_for(spec, name)

    def get(self, name: str) -> Backend:
        if name not in self._made:
            self._made[name] = self._make(name)
        return self._made[name]

    def _make(self, name: str) -> Backend:
        if name == "remote":
            from wai.backends.workers_ai import WorkersAIBackend

            if self.credentials is None:
                raise ConfigError(MISSING_CREDENTIALS.format(path=wai_home() / "config.toml"))
            self.credentials.check_sendable()
            debug_log = _stderr_line if self.debug else None
            return WorkersAIBackend(self.credentials, debug_log=debug_log)
        from wai.backends.llama import LlamaBackend

        opts = self.local_options
        return LlamaBackend(gpu_layers=opts.gpu_layers, threads=opts.threads, debug=opts.debug)

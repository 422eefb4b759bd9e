"""The remote backend, Cloudflare Workers AI (its HTTP client, stream.py, is built only when used)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar

from wai.backends.base import Backend, BackendName, BackendSettings
from wai.backends.workers_ai.sampling import RANGES
from wai.errors import ConfigError, UsageError, WaiError
from wai.settings import MISSING_CREDENTIALS, Credentials, wai_home

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wai.backends.request import Request
    from wai.backends.workers_ai.stream import WorkersAIStream
    from wai.catalog.entries import Catalog, ModelSpec
    from wai.conversation import Message
    from wai.events import Event
    from wai.sampling import Span
    from wai.schema import Schema
    from wai.tokens.counters import TokenCounter


# The capability of a model that answers in Workers AI's JSON mode (`response_format`).
JSON_MODE = "json_mode"


def _missing_credentials() -> str:
    return MISSING_CREDENTIALS.format(path=wai_home() / "config.toml")


def retired_here(spec: ModelSpec, credentials: Credentials) -> bool:
    """Retired, and asked of Cloudflare itself: another server (a proxy, a local one) decides."""
    from wai.catalog.retired import is_cloudflare

    return spec.retired() and is_cloudflare(credentials.base_url)


def _stderr_line(text: str) -> None:
    from wai.notices import Notifier

    Notifier().debug(text)  # debug lines quote servers and prompts: their text, never their controls


class WorkersAI(Backend):
    """Catalog models marked remote, on Cloudflare Workers AI with the user's credentials."""

    title = "Workers AI"
    reasoning_effort = True
    bills_neurons = True
    sampling_ranges: ClassVar[Mapping[str, Span]] = RANGES
    prompt_format = "as Workers AI is believed to apply it"
    warm_modules = ("wai.backends.workers_ai.stream", "httpx")

    def check_schema(self, spec: ModelSpec, schema: Schema, catalog: Catalog | None = None) -> None:
        """Workers AI's JSON mode (`response_format`), on the models that have it (the capability
        `json_mode`, in the built-in catalog or a refreshed listing)."""
        if JSON_MODE in spec.capabilities:
            return
        able = sorted(m.id for m in catalog or () if JSON_MODE in m.capabilities and not m.retired())
        raise UsageError(
            f"{schema.option}: {spec.id} has no JSON mode on Workers AI, so it cannot be held to a schema",
            hint=f"models that have it: {', '.join(able)}" if able else "see `wai models`",
        )

    def __init__(self, name: BackendName, settings: BackendSettings) -> None:
        super().__init__(name, settings)
        self._stream: WorkersAIStream | None = None

    def serves(self, spec: ModelSpec) -> bool:
        return spec.remote

    def unavailable(self, spec: ModelSpec) -> str | None:
        credentials = self.settings.credentials
        if not spec.remote:
            return "not served by Workers AI"
        if credentials is None:
            return "no credentials (CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN)"
        if retired_here(spec, credentials):
            return f"retired on Workers AI since {spec.retirement}"
        return None

    def refusal(self, spec: ModelSpec) -> WaiError | None:
        credentials = self.settings.credentials
        if credentials is not None and retired_here(spec, credentials):
            from wai.catalog.retired import retired_error

            return retired_error(spec)
        return None

    def require(self, spec: ModelSpec) -> None:
        if not spec.remote:
            remedy = (
                f"use --backend openai (or auto): it is a model of provider {spec.provider}"
                if spec.provider is not None
                else "use --backend local"
            )
            raise ConfigError(f"{spec.id} is not served by Workers AI", hint=remedy)
        if self.settings.credentials is None:
            raise ConfigError(_missing_credentials())
        refusal = self.refusal(spec)
        if refusal is not None:
            raise refusal

    def remedy(self, spec: ModelSpec) -> str:
        return _missing_credentials()

    def counter(self, spec: ModelSpec, *, running: bool = False) -> TokenCounter:
        """The family's vocabulary and the Workers AI prompt format, as counted before sending."""
        from wai.tokens.counters import remote_counter

        return remote_counter(spec)

    def prompt_text(self, spec: ModelSpec, messages: Sequence[Message]) -> str | None:
        """The prompt Workers AI is believed to build, known from the family even without its vocabulary."""
        from wai.tokens.remote_template import format_for

        remote_format = format_for(spec.family)
        return remote_format.render(messages) if remote_format is not None else None

    def open(self) -> None:
        self._client()

    def stream(self, request: Request) -> Iterator[Event]:
        return self._client().stream(request)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, **self._client().describe()}

    def batch_queue(self) -> WorkersAIStream:
        """The opened client, which also speaks the batch queue (`wai batch --queue`)."""
        return self._client()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def _client(self) -> WorkersAIStream:
        if self._stream is None:
            from wai.backends.workers_ai.stream import WorkersAIStream

            credentials = self.settings.credentials
            if credentials is None:
                raise ConfigError(_missing_credentials())
            credentials.check_sendable()
            self._stream = WorkersAIStream(
                credentials,
                debug_log=_stderr_line if self.settings.debug else None,
                backoff=self.settings.backoff,
            )
        return self._stream

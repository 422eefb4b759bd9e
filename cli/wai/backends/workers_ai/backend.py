"""Registers the remote backend, Workers AI (stream.py beside it, built only when used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from wai.backends.registry import BackendSettings, Registration, register
from wai.backends.workers_ai.sampling import RANGES
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.errors import ConfigError, WaiError
from wai.settings import MISSING_CREDENTIALS, Credentials, wai_home

if TYPE_CHECKING:
    from wai.backends.base import Backend
    from wai.windows.counters import TokenCounter


def _missing_credentials() -> str:
    return MISSING_CREDENTIALS.format(path=wai_home() / "config.toml")


def retired_here(spec: ModelSpec, credentials: Credentials) -> bool:
    """Retired, and asked of Cloudflare itself: another server (a proxy, a local one) decides."""
    from wai.catalog.retired import is_cloudflare

    return spec.retired() and is_cloudflare(credentials.base_url)


def _unavailable(spec: ModelSpec, credentials: Credentials | None) -> str | None:
    if not spec.remote:
        return "not served by Workers AI"
    if credentials is None:
        return "no credentials (CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN)"
    if retired_here(spec, credentials):
        return f"retired on Workers AI since {spec.retirement}"
    return None


def _refusal(spec: ModelSpec, credentials: Credentials | None) -> WaiError | None:
    if credentials is not None and retired_here(spec, credentials):
        from wai.catalog.retired import retired_error

        return retired_error(spec)
    return None


def _require(spec: ModelSpec, credentials: Credentials | None) -> None:
    if not spec.remote:
        remedy = (
            f"use --backend openai (or auto): it is a model of provider {spec.provider}"
            if spec.provider is not None
            else "use --backend local"
        )
        raise ConfigError(f"{spec.id} is not served by Workers AI", hint=remedy)
    if credentials is None:
        raise ConfigError(_missing_credentials())
    refusal = _refusal(spec, credentials)
    if refusal is not None:
        raise refusal


def _stderr_line(text: str) -> None:
    from wai.notices import Notifier

    Notifier().debug(text)  # debug lines quote servers and prompts: their text, never their controls


def _build(settings: BackendSettings) -> Backend:
    from wai.backends.workers_ai.stream import WorkersAIBackend

    if settings.credentials is None:
        raise ConfigError(_missing_credentials())
    settings.credentials.check_sendable()
    return WorkersAIBackend(settings.credentials, debug_log=_stderr_line if settings.debug else None)


def _counter(spec: ModelSpec) -> TokenCounter:
    from wai.windows.counters import remote_counter

    return remote_counter(spec)


def _prompt_text(spec: ModelSpec, messages: Sequence[Message]) -> str | None:
    """The prompt Workers AI is believed to build, known from the family even without its vocabulary."""
    from wai.windows.remote_template import format_for

    remote_format = format_for(spec.family)
    return remote_format.render(messages) if remote_format is not None else None


register(
    Registration(
        name="remote",
        build=_build,
        serves=lambda spec: spec.remote,
        unavailable=_unavailable,
        require=_require,
        remedy=lambda spec: _missing_credentials(),
        counter=_counter,
        refusal=_refusal,
        title="Workers AI",
        warm_modules=("wai.backends.workers_ai.stream", "httpx"),
        reasoning_effort=True,
        prompt_format="as Workers AI is believed to apply it",
        prompt_text=_prompt_text,
        sampling_ranges=RANGES,
    )
)

"""Registers the OpenAI-compatible backend (stream.py beside it, built only when used).

It serves exactly the models addressed as NAME:MODEL of a configured provider; the other
backends serve none of them, so "auto" always lands here for those.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wai.backends.registry import BackendSettings, Registration, register
from wai.catalog.entries import ModelSpec
from wai.errors import ConfigError
from wai.settings import Credentials, load_user_config

if TYPE_CHECKING:
    from wai.backends.base import Backend
    from wai.providers import Provider
    from wai.windows.counters import TokenCounter


def _providers() -> dict[str, Provider]:
    return load_user_config().providers()


def _provider(spec: ModelSpec) -> Provider:
    provider = _providers().get(spec.provider or "")
    if provider is None:
        raise ConfigError(
            f"{spec.id} is not a model of a configured provider",
            hint="address one as NAME:MODEL, NAME a [providers.NAME] table of config.toml",
        )
    return provider


def _unavailable(spec: ModelSpec, credentials: Credentials | None) -> str | None:
    return None if spec.provider is not None else "not a provider's model (NAME:MODEL)"


def _require(spec: ModelSpec, credentials: Credentials | None) -> None:
    _provider(spec)


def _build(settings: BackendSettings) -> Backend:
    from wai.backends.openai.stream import OpenAIBackend

    debug_log = None
    if settings.debug:
        from wai.notices import Notifier

        debug_log = Notifier().debug
    return OpenAIBackend(_providers(), debug_log=debug_log)


def _counter(spec: ModelSpec) -> TokenCounter:
    from wai.backends.openai.client import client_for
    from wai.backends.openai.count import ServerCounter

    provider = _provider(spec)
    return ServerCounter(client_for(provider), spec, provider.tokenizer)


def _plan_warnings(spec: ModelSpec) -> list[str]:
    from wai.backends.openai.models import assumed_warnings

    return assumed_warnings(spec)


register(
    Registration(
        name="openai",
        build=_build,
        serves=lambda spec: spec.provider is not None,
        unavailable=_unavailable,
        require=_require,
        remedy=lambda spec: "address it as NAME:MODEL of a [providers.NAME] in config.toml",
        counter=_counter,
        title="OpenAI API",
        in_catalog=False,
        warm_modules=("wai.backends.openai.stream", "wai.backends.openai.count", "httpx"),
        reasoning_effort=True,
        prompt_format="as the server applies it (llama-server's /apply-template; null where it cannot say)",
        plan_warnings=_plan_warnings,
    )
)

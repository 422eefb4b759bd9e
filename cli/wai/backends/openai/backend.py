"""The OpenAI-compatible backend (its HTTP chat client, stream.py, is built only when used).

It serves exactly the models addressed as NAME:MODEL of a configured provider; the other
backends serve none of them, so "auto" always lands here for those.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from wai.backends.base import Backend, BackendName, BackendSettings
from wai.errors import ConfigError, UsageError
from wai.settings import load_user_config

if TYPE_CHECKING:
    from wai.backends.openai.client import ProviderClient
    from wai.backends.openai.stream import OpenAIStream
    from wai.backends.request import Request
    from wai.catalog.entries import Catalog, ModelSpec
    from wai.events import Event
    from wai.providers import Provider
    from wai.schema import Schema
    from wai.settings import UserConfig
    from wai.tokens.counters import TokenCounter


class OpenAI(Backend):
    """Models of the providers in config.toml ([providers.NAME]), over the OpenAI chat API."""

    title = "OpenAI API"
    in_catalog = False
    reasoning_effort = True
    prompt_format = "as the server applies it (llama-server's /apply-template; null where it cannot say)"
    warm_modules = ("wai.backends.openai.stream", "wai.backends.openai.count", "httpx")

    def check_schema(self, spec: ModelSpec, schema: Schema, catalog: Catalog | None = None) -> None:
        """Sent as `response_format` (json_schema, strict), which vLLM, SGLang, llama-server and
        ollama all hold the reply to; the reply is validated when it arrives either way."""
        return None

    def __init__(self, name: BackendName, settings: BackendSettings) -> None:
        super().__init__(name, settings)
        self._providers: dict[str, Provider] | None = None
        # One client per provider: the windows, the count and the chat of a run share its connection.
        self._clients: dict[str, ProviderClient] = {}
        self._streams: dict[str, OpenAIStream] = {}
        self._learned: dict[str, ModelSpec] = {}  # windows read from servers this run, by model id
        self._making = threading.Lock()

    def claim(
        self, name: str, entry: ModelSpec | None, catalog: Catalog, config: UserConfig
    ) -> ModelSpec | None:
        """NAME:MODEL of a configured provider, or a catalog entry's alias of one; its windows read
        from the server at first use. A catalog id with a colon whose part before it names no
        provider stays the catalog's."""
        found = self._provider_model(name, catalog, config)
        if found is None and entry is not None:
            found = self._provider_model(entry.id, catalog, config)
        return found

    def _provider_model(self, name: str, catalog: Catalog, config: UserConfig) -> ModelSpec | None:
        if ":" not in name:
            return None
        from wai.providers import split_model

        split = split_model(name, config.providers())
        if split is None:
            return None
        provider, model = split
        if not model.strip():
            raise UsageError(
                f"-m {name} names no model of provider {provider.name}", hint=f"-m {provider.name}:MODEL"
            )
        from wai.backends.openai.models import provider_spec

        return self.windows(provider_spec(provider, model, catalog))

    def serves(self, spec: ModelSpec) -> bool:
        return spec.provider is not None

    def unavailable(self, spec: ModelSpec) -> str | None:
        return None if spec.provider is not None else "not a provider's model (NAME:MODEL)"

    def require(self, spec: ModelSpec) -> None:
        self._provider(spec)

    def remedy(self, spec: ModelSpec) -> str:
        return "address it as NAME:MODEL of a [providers.NAME] in config.toml"

    def windows(self, spec: ModelSpec) -> ModelSpec:
        """A model neither the catalog nor a refresh knows gets its windows from its server, asked
        once per run (at its first use, then kept for later runs); what is known is kept as is."""
        if spec.provider is None or spec.assumed_windows != "now":
            return spec
        if spec.id not in self._learned:
            from wai.backends.openai.models import learn_windows

            self._learned[spec.id] = learn_windows(spec, self._client(self._provider(spec)))
        return self._learned[spec.id]

    def counter(self, spec: ModelSpec, *, running: bool = False) -> TokenCounter:
        from wai.backends.openai.count import ServerCounter

        provider = self._provider(spec)
        return ServerCounter(self._client(provider), spec, provider.tokenizer)

    def warnings(self, spec: ModelSpec) -> list[str]:
        from wai.backends.openai.models import assumed_warnings

        return assumed_warnings(spec)

    def stream(self, request: Request) -> Iterator[Event]:
        with self._making:  # `wai batch` streams from several threads: one stream per provider
            provider = self._provider(request.model, running=True)
            chat = self._streams.get(provider.name)
            if chat is None:
                from wai.backends.openai.stream import OpenAIStream

                debug_log = None
                if self.settings.debug:
                    from wai.notices import Notifier

                    debug_log = Notifier().debug
                chat = self._streams[provider.name] = OpenAIStream(
                    self._client(provider), debug_log=debug_log, backoff=self.settings.backoff
                )
        return chat.stream(request)

    def describe(self) -> dict[str, object]:
        from wai.backends.http.chat import DEFAULT_MAX_RETRIES

        return {
            "backend": self.name,
            "providers": {name: p.base_url for name, p in self._all_providers().items()},
            "max_retries": DEFAULT_MAX_RETRIES,
        }

    def close(self) -> None:
        for chat in self._streams.values():
            chat.close()
        for client in self._clients.values():
            client.close()
        self._streams.clear()
        self._clients.clear()

    def _all_providers(self) -> dict[str, Provider]:
        if self._providers is None:
            config = self.settings.config or load_user_config()
            self._providers = config.providers()
        return self._providers

    def _provider(self, spec: ModelSpec, *, running: bool = False) -> Provider:
        provider = self._all_providers().get(spec.provider or "")
        if provider is None and running:
            raise ConfigError(
                f"{spec.id} names no configured provider", hint="see [providers] in config.toml"
            )
        if provider is None:
            raise ConfigError(
                f"{spec.id} is not a model of a configured provider",
                hint="address one as NAME:MODEL, NAME a [providers.NAME] table of config.toml",
            )
        return provider

    def _client(self, provider: Provider) -> ProviderClient:
        client = self._clients.get(provider.name)
        if client is None or client.provider != provider:
            from wai.backends.openai.client import ProviderClient

            client = self._clients[provider.name] = ProviderClient(
                provider, timeout=self.settings.read_timeout
            )
        return client

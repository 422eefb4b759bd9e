"""The OpenAI-compatible backend: `POST {base_url}/chat/completions`, streamed, for every provider.

vLLM, SGLang, llama-server, ollama, Workers AI's /v1 and OpenAI itself speak it. The streaming,
retries (429 and 5xx, honouring Retry-After, only before the first token) and reading of chunks
are shared with Workers AI (http/chat.py); here are the body (`max_tokens` always, usage asked
for with `stream_options`), the provider's headers and key, and what its refusals mean
(errors.py). Requests share the provider's connection pool with the count before them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from wai.backends.http.chat import ChatOptions, StreamingChatBackend, sampling_fields
from wai.backends.http.errors import ApiError
from wai.backends.openai.client import ProviderClient, models_in_words
from wai.backends.openai.errors import provider_error
from wai.backends.request import Request
from wai.errors import ConfigError, WaiError
from wai.events import Event
from wai.wording import counted

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx


class OpenAIStream(StreamingChatBackend):
    """Runs models of one provider of config.toml: NAME:MODEL, NAME the provider."""

    debug_prefix = "openai"

    def __init__(self, client: ProviderClient, **options: Unpack[ChatOptions]) -> None:
        # Messages name the provider; its key and URL secrets never reach one.
        super().__init__(scrub=client.scrub, base_shown=client.provider.base_url, **options)
        self.who = client.provider.name
        self._client_of_provider = client

    def stream(self, request: Request) -> Iterator[Event]:
        provider = self._client_of_provider.provider
        if provider.timeout is not None and not request.timeouts.read_given:
            from dataclasses import replace

            request = replace(request, timeouts=replace(request.timeouts, read=provider.timeout))
        return super().stream(request)

    def describe(self) -> dict[str, object]:
        return {"max_retries": self._max_retries}

    # -- the request ----------------------------------------------------------------------------

    def _http_for(self, request: Request) -> httpx.Client:
        return self._client_of_provider.http()

    def _url(self, request: Request) -> str:
        return f"{self._client_of_provider.provider.base_url}/chat/completions"

    def _headers(self, request: Request) -> dict[str, str]:
        headers = self._client_of_provider.headers()
        if request.affinity is not None and self._client_of_provider.provider.session_affinity:
            headers["x-session-affinity"] = request.affinity  # where the provider table asks for it
        return headers

    def body(self, request: Request) -> dict[str, object]:
        """`max_tokens` always (a server's own default may be tiny or the whole context), usage asked
        for on the last chunk; the sampling options the user gave, under OpenAI's names (top_k and
        repetition_penalty as vLLM, SGLang and llama-server take them)."""
        if request.raw:  # checked before anything is sent: the body is made before the request
            from wai.errors import UsageError

            raise UsageError(
                "--raw cannot go to a provider's model: the chat-completions API takes messages, not a "
                "verbatim prompt"
            )
        body: dict[str, object] = {
            "model": request.model.served_name,
            "messages": [message.as_dict() for message in request.messages],
            "max_tokens": request.max_tokens,
            "stream": request.stream,
        }
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        body.update(sampling_fields(request))
        if request.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema.name,
                    "schema": request.schema.document,
                    "strict": True,
                },
            }
        return body

    def _empty_stream_hint(self, request: Request) -> str | None:
        from wai.backends.openai.learned import ASSUMED_CONTEXT, windows_assumed
        from wai.catalog.entries import user_catalog_path

        if not windows_assumed(request.model):
            return None
        return (
            f"the prompt may exceed {self.who}'s context: it tells none, and wai assumed "
            f"{ASSUMED_CONTEXT} tokens; set context_window and max_output under "
            f'[models."{request.model.id}"] in {user_catalog_path()}'
        )

    def _bad_address(self, reason: str) -> ConfigError:
        return ConfigError(
            f"the base_url of provider {self.who} is not usable ({reason}): now {self._base_shown}"
        )

    # -- failures -------------------------------------------------------------------------------

    def _refused(self, request: Request, error: ApiError, body: bytes = b"") -> WaiError:
        self._debug(f"error reply: {error.where()}")
        client = self._client_of_provider
        return provider_error(
            error,
            client.provider,
            model=request.model.served_name,
            listed=lambda: models_in_words(client, request.model.served_name),
            extra=_context_numbers(body),
        )


def _context_numbers(raw: bytes) -> str:
    """llama-server's figures beside its message: `n_prompt_tokens` and `n_ctx`."""
    import json

    try:
        data = json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ""
    prompt, context = error.get("n_prompt_tokens"), error.get("n_ctx")
    if isinstance(prompt, int) and isinstance(context, int):
        return f"; the prompt is {counted(prompt, 'token')}, the context {context}"
    return ""

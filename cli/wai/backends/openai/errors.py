"""An OpenAI-compatible server's refusals as one line a person can act on, and the right exception.

vLLM, SGLang, llama-server, ollama and OpenAI itself answer `{"error": {"message": ...}}` (vLLM
also `{"object": "error", "message": ...}`); `http/errors.parse_error` reads every shape.
What the status means here: 401/403 a key (named by its variable), 404 a model the server does
not serve (listed from GET /models), 400 with the words of a context-length complaint a window
error (exit 3) with the server's numbers, 429 and 5xx worth another try.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from wai.backends.http.errors import ApiError
from wai.errors import BackendError, ConfigError, RetryableError, WaiError, WindowError
from wai.providers import Provider

if TYPE_CHECKING:
    from wai.backends.openai.client import Listing

# Each engine's words for a prompt and max_tokens over the context (vLLM and OpenAI, SGLang,
# llama-server, TGI, and wai serve, which answers as Workers AI does: 413, code 5021).
_WINDOW_WORDS = re.compile(
    r"maximum context length|context length|context size|context window|max_completion_tokens is too large"
    r"|exceed_context_size|too many tokens|max_tokens is too large|longer than the model|input too long",
    re.I,
)
_WINDOW_CODE = 5021
_NUMBERS = re.compile(r"(\d[\d,]*)\s*(?:tokens|\))", re.I)
_QUOTA = re.compile(r"insufficient_quota|exceeded your current quota|billing", re.I)


def is_window_complaint(error: ApiError) -> bool:
    if error.status not in (400, 413, 422):
        return False
    return error.code == _WINDOW_CODE or bool(_WINDOW_WORDS.search(error.message))


def provider_error(
    error: ApiError,
    provider: Provider,
    *,
    model: str,
    listed: Callable[[], Listing],
    extra: str = "",
) -> WaiError:
    """The exception for a refused request to `provider`.

    `listed`: what GET /models offers (asked only for a 404). `extra`: numbers a server
    gave beside its message (llama-server's n_prompt_tokens and n_ctx), for a window error.
    """
    name, where = provider.name, error.where()
    if error.status == 429 and not _QUOTA.search(error.message):
        return RetryableError(
            f"{name} is busy or rate-limited ({where}); try again shortly", retry_after=error.retry_after
        )
    if error.status == 429:
        return BackendError(f"{name} refused the request: the account's quota is used up ({where})")
    if error.status >= 500:
        return RetryableError(
            f"{name} failed on its side ({where}); try again later", retry_after=error.retry_after
        )
    if is_window_complaint(error):
        return WindowError(
            f"{name} says the prompt and the reply do not fit {model}'s context ({where}{extra}); "
            "shorten the prompt or lower --max-tokens"
        )
    if error.status in (401, 403):
        return ConfigError(f"{name} refused the API key ({where}); {provider.key_words()}")
    if error.status == 404:
        listing = listed()
        if listing.route_missing:
            return ConfigError(
                f"{name} answered 404 to the chat request ({where}) and to GET /models: its base_url "
                f"{provider.base_url} looks wrong; it should end at the /v1 of an OpenAI-compatible server",
                hint=f"check base_url in {provider.where}",
            )
        if listing.lists_model:
            return ConfigError(
                f"{name} refused the model {model!r} ({where}) although GET /models lists it; "
                "the server may still be loading it, or serve it under another route",
                hint="try again shortly; --debug shows the request",
            )
        return ConfigError(
            f"{name} does not serve the model {model!r} ({where}); {listing.words}",
            hint=f"use -m {name}:MODEL with one of them; `wai models --refresh` keeps the list",
        )
    if 300 <= error.status < 400:
        return ConfigError(f"{name} answered with a redirect ({where}); check base_url in {provider.where}")
    return BackendError(f"{name} {error.refusal} ({where}); --debug shows the request")

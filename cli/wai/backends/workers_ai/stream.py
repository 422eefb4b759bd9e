"""The Workers AI backend: the REST API's `ai/run` endpoint over httpx, streamed as server-sent events.

The streaming, the retries and the reading of replies are shared with every chat backend over
HTTP (http/chat.py); here is what is Workers AI's own: the URL with the account, the body, and
what its refusals mean (http/errors.py). The API token goes into the Authorization header
and nowhere else; every message, exception and debug line is scrubbed of it.
"""

from __future__ import annotations

from typing import Unpack
from urllib.parse import quote

from wai.backends.http.chat import (
    DONE,
    EMPTY_REPLY,
    TOOL_CALL_NOTICE,
    WHOLE_REPLY_READ_TIMEOUT,
    ChatOptions,
    StreamingChatBackend,
    retry_after_seconds,
    sampling_fields,
)
from wai.backends.http.errors import (
    ApiError,
    Scrubber,
    display_url,
    error_for,
    is_retirement,
    mask,
    retirement_day,
    url_secrets,
)
from wai.backends.request import Request
from wai.catalog.entries import model_id_problem
from wai.errors import ConfigError, WaiError
from wai.settings import Credentials

__all__ = ["DONE", "EMPTY_REPLY", "TOOL_CALL_NOTICE", "WHOLE_REPLY_READ_TIMEOUT", "WorkersAIStream"]

_retry_after = retry_after_seconds  # the name tests and older callers know


class WorkersAIStream(StreamingChatBackend):
    """Runs catalog models on Cloudflare Workers AI.

    `sleep`, `base_delay`, `max_delay`, `max_total_wait` and `rng` shape the retry back-off
    (exponential with jitter, never shorter than a Retry-After); tests make them fast.
    """

    who = "Workers AI"
    debug_prefix = "workers-ai"

    def __init__(self, credentials: Credentials, **options: Unpack[ChatOptions]) -> None:
        super().__init__(
            scrub=Scrubber(credentials.api_token, *url_secrets(credentials.base_url)),
            base_shown=display_url(credentials.base_url),
            **options,
        )
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"WorkersAIStream(base_url={self._base_shown!r})"

    def precision(self, request: Request) -> str | None:
        # Workers AI does not say; the catalog's declaration is the best there is.
        return request.model.precision

    def describe(self) -> dict[str, object]:
        base, account = self._base_shown, mask(self._credentials.account_id)
        return {
            "base_url": base,
            "account_id": account,
            "endpoint": f"{base}/accounts/{account}/ai/run/{{model}}",
            "max_retries": self._max_retries,
        }

    def __enter__(self) -> WorkersAIStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the request ----------------------------------------------------------------------------

    def body(self, request: Request) -> dict[str, object]:
        """The JSON body: `max_tokens` always, so the API's own default of 256 never cuts a reply.

        A raw request sends its one message as `prompt` with `raw: true`: no chat template.
        """
        body: dict[str, object]
        if request.raw:
            body = {"prompt": request.messages[-1].content, "raw": True}
        else:
            body = {"messages": [message.as_dict() for message in request.messages]}
        body["stream"] = request.stream
        body["max_tokens"] = request.max_tokens
        body.update(sampling_fields(request))
        if request.schema is not None:
            # JSON mode does not stream: the whole object comes at once, under the spinner.
            body["stream"] = False
            body["response_format"] = {"type": "json_schema", "json_schema": request.schema.document}
        return body

    def _url(self, request: Request) -> str:
        model = request.model.id
        problem = model_id_problem(model)
        if problem is not None:  # the catalog refuses these; a spec built elsewhere must not slip by
            raise ConfigError(f"the model id {model!r} cannot be sent to Workers AI: {problem}")
        account = quote(self._credentials.account_id, safe="")
        # `@` and `/` stay as in Cloudflare's own examples ("@cf/meta/..."); `#`, `?`, `%` and
        # spaces are escaped so the whole id stays in the path.
        return f"{self._credentials.base_url}/accounts/{account}/ai/run/{quote(model, safe='@/')}"

    def _headers(self, request: Request) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._credentials.api_token}"}
        if request.affinity is not None:
            # Prompt caching: a conversation's requests reach the instance that holds its prefix.
            headers["x-session-affinity"] = request.affinity
        return headers

    def _bad_address(self, reason: str) -> ConfigError:
        return ConfigError(f"CLOUDFLARE_BASE_URL is not a usable address ({reason}): now {self._base_shown}")

    # -- failures -------------------------------------------------------------------------------

    def _refused(self, request: Request, error: ApiError, body: bytes = b"") -> WaiError:
        self._debug(f"error reply: {error.where()}")
        if is_retirement(error):
            from wai.catalog.retired import retired_error

            return retired_error(request.model, day=retirement_day(error), said=error.where())
        return error_for(
            error,
            model=request.model.id,
            account_id=self._credentials.account_id,
            base_url=self._base_shown,
            window=request.model.total_context,
        )

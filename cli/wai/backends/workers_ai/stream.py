"""The Workers AI backend: the REST API's `ai/run` endpoint over httpx, streamed as server-sent events.

The streaming, the retries and the reading of replies are shared with every chat backend over
HTTP (http/chat.py); here is what is Workers AI's own: the URL with the account, the body, and
what its refusals mean (http/errors.py). The API token goes into the Authorization header
and nowhere else; every message, exception and debug line is scrubbed of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Unpack
from urllib.parse import quote

from wai.backends.http.chat import (
    DONE,
    EMPTY_REPLY,
    TOOL_CALL_NOTICE,
    WHOLE_REPLY_READ_TIMEOUT,
    ChatOptions,
    StreamingChatBackend,
    _Progress,
    retry_after_seconds,
    sampling_fields,
)
from wai.backends.http.errors import (
    ApiError,
    Scrubber,
    body_text,
    display_url,
    error_for,
    is_retirement,
    mask,
    one_line,
    retirement_day,
    url_secrets,
)
from wai.backends.request import Request
from wai.catalog.entries import model_id_problem
from wai.errors import BackendError, ConfigError, RetryableError, WaiError
from wai.events import Event
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

    # -- the batch queue (`wai batch --queue`) --------------------------------------------------

    def queue_submit(self, model: Request, bodies: Sequence[tuple[str, dict[str, object]]]) -> str:
        """Put the bodies (each with its external reference) on the model's batch queue in one
        request; returns the request id to poll. `model`: any request of the batch (its model,
        timeouts, affinity)."""
        requests = [{**body, "stream": False, "external_reference": ref} for ref, body in bodies]
        answer = self._queue_post(model, {"requests": requests}, shown=f"{len(requests)} requests")
        request_id = answer.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise BackendError(f"{self.who} queued the batch but named no request_id: {_shown_json(answer)}")
        return request_id

    def queue_poll(self, model: Request, request_id: str) -> list[dict[str, Any]] | None:
        """The responses of a queued request, or None while it is still queued or running."""
        answer = self._queue_post(model, {"request_id": request_id})
        responses = answer.get("responses")
        if isinstance(responses, list):
            return [response for response in responses if isinstance(response, dict)]
        if answer.get("status") in ("queued", "running"):
            return None
        raise BackendError(f"{self.who} answered a poll of {request_id} with {_shown_json(answer)}")

    def queue_events(self, request: Request, response: Mapping[str, Any]) -> list[Event] | WaiError:
        """One queued response as the events a stream of the request would have brought, or the
        record's own failure."""
        result = response.get("result")
        if response.get("success") is False or not isinstance(result, dict):
            why = self._queue_failure(response)
            return BackendError(f"{self.who} failed this record in the queue: {why}")
        progress = _Progress(notices=set())
        try:
            events = list(self._read(result, progress, whole=True))
            if progress.empty:
                raise BackendError(EMPTY_REPLY)
            return events + list(self._ending(request, progress))
        except WaiError as error:
            return error

    def _queue_failure(self, response: Mapping[str, Any]) -> str:
        found: object = response.get("errors") or response.get("error")
        result = response.get("result")
        if not found and isinstance(result, dict):
            found = result.get("errors") or result.get("error")
        if isinstance(found, list) and found:
            found = found[0]
        if isinstance(found, dict):
            code, message = found.get("code"), found.get("message")
            found = f"{message} ({code})" if code is not None else message
        return one_line(self._scrub(str(found))) if found else "no reason given"

    def _queue_post(
        self, model: Request, body: dict[str, object], *, shown: str | None = None
    ) -> dict[str, Any]:
        """One request to the queue (a submit when `shown` tells its requests, else a poll): its
        answer's `result` object (the envelope's, or the body)."""
        import httpx

        url = self._url(model) + ("?queueRequest=true" if shown is not None else "")
        timeouts = model.timeouts
        timeout = httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.read, pool=timeouts.connect
        )
        self._debug(f"POST {display_url(url)} {shown or json.dumps(body)}")
        try:
            response = self._http().post(url, json=body, headers=self._headers(model), timeout=timeout)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise self._bad_address(self._scrub(str(exc))) from None
        except httpx.TimeoutException:
            raise RetryableError(f"{self.who} did not answer within {timeouts.read:g} s") from None
        except httpx.TransportError as exc:
            raise RetryableError(self._unreachable(exc)) from None
        self._debug(f"HTTP {response.status_code}")
        if response.status_code >= 300:
            raise self._refusal(model, response)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        result = payload.get("result") if isinstance(payload, dict) else None
        answer = result if isinstance(result, dict) else payload
        if not isinstance(answer, dict):
            preview = one_line(self._scrub(body_text(response.text)))
            raise BackendError(f"{self.who} sent a queue answer wai cannot read: {preview or '(empty)'}")
        return answer


def _shown_json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 200 else text[:200] + "..."

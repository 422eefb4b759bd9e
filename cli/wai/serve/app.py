"""The routes of `wai serve` on Starlette: Workers AI's, the OpenAI-compatible ones, the page.

Every API route wants `Authorization: Bearer TOKEN`; the page's own routes also take the
HttpOnly cookie that `/?token=TOKEN` sets (EventSource cannot send headers), whose value is
derived from the token, never the token itself. An access log line per request goes to stderr:
the path without its query string, never a header or a cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wai.catalog.entries import ModelSpec
from wai.events import Reasoning, Token
from wai.sampling import OPTIONS_BY_NAME
from wai.serve.connection import READ_TIMEOUT
from wai.serve.failures import log_unexpected, one_line
from wai.serve.jobs import Accepted, Ended, Failed, Job
from wai.serve.protocol import (
    AUTH_ERROR,
    BAD_ROUTE,
    INTERNAL_ERROR,
    INVALID_INPUT,
    NO_SUCH_MODEL,
    OUT_OF_CAPACITY,
    WINDOW_EXCEEDED,
    ApiFailure,
    Ask,
    invalid,
    model_for,
    models_search,
    openai_ask,
    openai_model,
    openai_models,
    parse_json,
    shown_name,
    workers_ai_ask,
)
from wai.serve.replies import Dialect, OpenAIReply, Outcome, PageReply, WorkersAIReply
from wai.serve.worker import ModelWorker, Pool
from wai.terminal.safe_text import log_safe
from wai.wording import counted

COOKIE = "wai_serve_session"
# The largest request body read: far more text than any served model's window takes.
MAX_BODY = 8 * 2**20
ACCOUNT = "/client/v4/accounts/{account}/ai"
CLIENT_GONE = "client gone"
_JSON_HEADERS = {"cache-control": "no-store"}


@dataclass(slots=True)
class ServeState:
    token: str
    pool: Pool
    served: list[ModelSpec]
    log: Callable[[str], None]
    debug: bool = False
    read_timeout: float = READ_TIMEOUT  # seconds a client may take between parts of a request body

    @property
    def session(self) -> str:
        # The cookie proves the token was shown once; it is not the token.
        return hmac.new(self.token.encode(), b"wai serve page session", hashlib.sha256).hexdigest()

    def by_id(self) -> dict[str, ModelSpec]:
        return {spec.id: spec for spec in self.served}


def build_app(state: ServeState) -> ASGIApp:
    routes = [
        Route(ACCOUNT + "/run/{model:path}", _handler(state, _run), methods=["POST"]),
        Route(ACCOUNT + "/models/search", _handler(state, _search), methods=["GET"]),
        Route(ACCOUNT + "/v1/chat/completions", _handler(state, _chat, openai=True), methods=["POST"]),
        Route("/v1/chat/completions", _handler(state, _chat, openai=True), methods=["POST"]),
        Route(ACCOUNT + "/v1/models", _handler(state, _models, openai=True), methods=["GET"]),
        Route("/v1/models", _handler(state, _models, openai=True), methods=["GET"]),
        Route(ACCOUNT + "/v1/models/{model:path}", _handler(state, _model, openai=True), methods=["GET"]),
        Route("/v1/models/{model:path}", _handler(state, _model, openai=True), methods=["GET"]),
        Route("/debug/metrics", _handler(state, _metrics, cookie=True), methods=["GET"]),
        Route("/page/models", _handler(state, _page_models, cookie=True), methods=["GET"]),
        Route("/page/stream", _handler(state, _page_stream, cookie=True), methods=["GET"]),
        Route("/", _page_for(state), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _route_error},  # type: ignore[dict-item]
    )
    return AccessLog(PlainPaths(app), state.log)


# --- authentication and errors ----------------------------------------------------------------


def _bearer_ok(request: Request, token: str) -> bool:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _cookie_ok(request: Request, state: ServeState) -> bool:
    return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), state.session.encode())


def _failure_response(failure: ApiFailure, dialect: Dialect) -> Response:
    headers = _JSON_HEADERS
    if failure.status == 408:  # the rest of the body, if it ever comes, is no next request
        headers = {**headers, "connection": "close"}
    return JSONResponse(dialect.error(failure), status_code=failure.status, headers=headers)


class _Unanswered(Response):
    """No reply: the client has gone."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


Endpoint = Callable[[Request, ServeState], Any]


def _handler(state: ServeState, endpoint: Endpoint, *, openai: bool = False, cookie: bool = False) -> Any:
    """The endpoint behind the token check; an ApiFailure becomes the error reply of its dialect."""

    async def handle(request: Request) -> Response:
        dialect: Dialect = OpenAIReply() if openai else WorkersAIReply()
        if not (_bearer_ok(request, state.token) or (cookie and _cookie_ok(request, state))):
            _note(request.scope, refused=f"{AUTH_ERROR}")
            return _failure_response(ApiFailure(401, AUTH_ERROR, "Authentication error"), dialect)
        try:
            response: Response = await endpoint(request, state)
            return response
        except ApiFailure as failure:
            _note(request.scope, refused=f"{failure.code}")
            return _failure_response(failure, dialect)
        except ClientGone as gone:
            _note(request.scope, gone=str(gone))
            return _Unanswered()
        except Exception as error:  # a bug: this request gets a 500 in its API's shape, not plain text
            log_unexpected(state.log, state.debug, f"{request.method} {request.url.path} failed", error)
            message = f"wai serve failed on this request: {one_line(error)}"
            return _failure_response(ApiFailure(500, INTERNAL_ERROR, message), dialect)

    return handle


async def _route_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 405:
        failure = ApiFailure(405, 7001, f"Method {request.method} not allowed for this route")
    else:
        failure = ApiFailure(exc.status_code, BAD_ROUTE, "No route for that URI")
    _note(request.scope, refused=f"{failure.code}")
    return _failure_response(failure, _dialect_for(request.url.path))


def _dialect_for(path: str) -> Dialect:
    # Under /v1 the OpenAI SDKs read an `error` object; Cloudflare's `errors` stay beside it.
    return OpenAIReply() if path.startswith("/v1/") or "/ai/v1/" in path else WorkersAIReply()


class PlainPaths:
    """A path holding a control character is refused 400 before routing: no model name or route
    has one, and a route's pattern would otherwise match `loop` for `loop%0a` (`$` matches before
    a final newline)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        at = next((i for i, c in enumerate(path) if unicodedata.category(c) == "Cc"), None)
        if at is None:
            await self.app(scope, receive, send)
            return
        shown = path[at].encode("unicode_escape").decode("ascii")
        where = f"the path holds a control character ({shown} at character {at + 1})"
        if "/ai/run/" in path or "/models/" in path:
            failure = ApiFailure(400, NO_SUCH_MODEL, f"No such model: {where}, which no model name has")
        else:
            failure = ApiFailure(400, BAD_ROUTE, f"No route for that URI: {where}, which no route has")
        _note(scope, refused=f"{failure.code}")
        await _failure_response(failure, _dialect_for(path))(scope, receive, send)


# --- Workers AI -------------------------------------------------------------------------------


async def _body(request: Request, state: ServeState) -> dict[str, Any]:
    """The JSON body, read only up to MAX_BODY bytes: a larger one is refused before it is read
    whole, let alone parsed and tokenized on the model's thread. A client that stops sending it
    for the read timeout is answered 408; one that leaves meanwhile is gone, not a failure."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large(int(declared))
    chunks: list[bytes] = []
    size = 0
    parts = request.stream()
    try:
        while True:
            async with asyncio.timeout(state.read_timeout):
                chunk = await anext(parts, None)
            if chunk is None:
                break
            size += len(chunk)
            if size > MAX_BODY:
                raise _too_large(None)
            chunks.append(chunk)
    except TimeoutError:
        of = f" of {int(declared)}" if declared.isdigit() else ""
        raise ApiFailure(
            408,
            INVALID_INPUT,
            f"Request timeout: {size}{of} bytes of the body came, then none for {state.read_timeout:g} s",
        ) from None
    except ClientDisconnect:
        of = f" of {int(declared)}" if declared.isdigit() else ""
        raise ClientGone(f"{CLIENT_GONE} while sending its body ({size}{of} bytes came)") from None
    finally:
        await parts.aclose()
    return parse_json(b"".join(chunks))


class ClientGone(Exception):
    """The client left before its request was whole: nobody to answer, nothing failed."""


def _too_large(size: int | None) -> ApiFailure:
    what = f"is {size / 2**20:.1f} MiB, over" if size is not None else "is over"
    limit = f"wai serve's limit of {MAX_BODY // 2**20} MiB"
    return ApiFailure(413, WINDOW_EXCEEDED, f"Input too long: the request body {what} {limit}")


async def _run(request: Request, state: ServeState) -> Response:
    spec = model_for(request.path_params["model"], state.by_id())
    ask = workers_ai_ask(await _body(request, state), spec)
    return _start(request, state, ask, WorkersAIReply())


async def _search(request: Request, state: ServeState) -> Response:
    query = request.query_params
    page = _query_int(query.get("page"), "page", 1)
    per_page = min(_query_int(query.get("per_page"), "per_page", 20), 1000)
    task = query.get("task")
    author = query.get("author")
    served = state.served
    if task and task.strip().lower() != "text generation":
        served = []
    if author:
        served = [spec for spec in served if author.lower() in spec.id.lower()]
    body = models_search(served, page=page, per_page=per_page, search=query.get("search"))
    return JSONResponse(body, headers=_JSON_HEADERS)


def _query_int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name} must be a whole number of at least 1") from None
    if value < 1:
        raise invalid(f"{name} must be a whole number of at least 1")
    return value


# --- OpenAI-compatible ------------------------------------------------------------------------


async def _chat(request: Request, state: ServeState) -> Response:
    ask = openai_ask(await _body(request, state), state.by_id())
    return _start(request, state, ask, OpenAIReply())


async def _models(request: Request, state: ServeState) -> Response:
    return JSONResponse(openai_models(state.served), headers=_JSON_HEADERS)


async def _model(request: Request, state: ServeState) -> Response:
    name = request.path_params["model"]
    spec = state.by_id().get(name)
    if spec is None:
        known = ", ".join(sorted(state.by_id())) or "none"
        raise ApiFailure(404, NO_SUCH_MODEL, f"No such model {shown_name(name)} (this server runs: {known})")
    return JSONResponse(openai_model(spec), headers=_JSON_HEADERS)


async def _metrics(request: Request, state: ServeState) -> Response:
    return JSONResponse(state.pool.snapshot(), headers=_JSON_HEADERS)


# --- the page ---------------------------------------------------------------------------------


def _page_for(state: ServeState) -> Any:
    html = resources.files("wai.serve").joinpath("page.html").read_text(encoding="utf-8")
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    import base64

    script_hash = base64.b64encode(digest).decode()
    headers = {
        # Only the page's own inline script runs; it talks to this server alone.
        "content-security-policy": (
            f"default-src 'none'; script-src 'sha256-{script_hash}'; style-src 'unsafe-inline'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        ),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }

    async def page(request: Request) -> Response:
        offered = request.query_params.get("token")
        if offered is not None:
            if not hmac.compare_digest(offered.encode(), state.token.encode()):
                return HTMLResponse(_SIGN_IN.format(why="That token is not this server's."), 401, headers)
            # The token leaves the address bar (and the history) at once; the cookie stays.
            redirect = RedirectResponse("/", status_code=303, headers={"cache-control": "no-store"})
            redirect.set_cookie(COOKIE, state.session, httponly=True, samesite="strict", path="/")
            return redirect
        if not _cookie_ok(request, state):
            why = "Open the address <code>wai serve</code> printed, the one ending in <code>/?token=…</code>."
            return HTMLResponse(_SIGN_IN.format(why=why), 401, headers)
        return HTMLResponse(html, headers=headers)

    return page


_SIGN_IN = (
    "<!doctype html><meta charset=utf-8><title>wai serve</title>"
    "<body style='font:16px system-ui;margin:3em'><h1>wai serve</h1><p>{why}</p></body>"
)


async def _page_models(request: Request, state: ServeState) -> Response:
    models = [
        {
            "id": spec.id,
            "context_window": spec.context_window,
            "max_output": spec.max_output,
            "total_context": spec.total_context,
            "precision": spec.precision,
            "description": spec.description,
        }
        for spec in state.served
    ]
    return JSONResponse({"models": models}, headers=_JSON_HEADERS)


# What the page's form sends besides the prompt and the system prompt.
_PAGE_OPTIONS = ("max_tokens", "temperature", "top_p", "seed")


async def _page_stream(request: Request, state: ServeState) -> Response:
    query = request.query_params
    dialect = PageReply()
    try:
        body: dict[str, Any] = {"prompt": query.get("prompt") or None, "stream": True}
        if query.get("system"):
            body = {"messages": [{"role": "system", "content": query["system"]}], "stream": True}
            body["messages"].append({"role": "user", "content": query.get("prompt", "")})
        for key in _PAGE_OPTIONS:
            kind = OPTIONS_BY_NAME[key].kind if key in OPTIONS_BY_NAME else int
            if query.get(key):
                try:
                    body[key] = kind(query[key])
                except ValueError:
                    raise invalid(f"{key} must be a number") from None
        ask = workers_ai_ask(body, model_for(query.get("model", ""), state.by_id()))
        return _start(request, state, ask, dialect)
    except ApiFailure as failure:
        _note(request.scope, refused=f"{failure.code}")
        return _event_stream(dialect.cut(failure))


def _event_stream(body: bytes) -> Response:
    return Response(body, media_type="text/event-stream", headers={"cache-control": "no-store"})


# --- running a request ------------------------------------------------------------------------


def _start(request: Request, state: ServeState, ask: Ask, dialect: Dialect) -> Response:
    if request.method == "HEAD":
        # The headers a GET would get, checked as a GET would be; no reply is generated for a
        # client that asked for none.
        media_type = "text/event-stream" if ask.stream else "application/json"
        return Response(media_type=media_type, headers={"cache-control": "no-store"})
    worker = state.pool.workers[ask.model.id]
    job = Job(ask, asyncio.get_running_loop())
    _note(request.scope, model=ask.model.id)
    try:
        worker.submit(job)
    except ApiFailure as failure:
        _note(request.scope, refused=f"{failure.code}")
        if dialect.streams_errors:
            return _event_stream(dialect.cut(failure))
        raise
    return JobResponse(job, worker, dialect)


class JobResponse(Response):
    """Waits for the job's turn, then answers: an error, the whole reply, or its event stream.

    A watcher reads the connection meanwhile: when the client goes away, the job is cancelled,
    waiting or decoding, and its slot goes to the next request.
    """

    def __init__(self, job: Job, worker: ModelWorker, dialect: Dialect) -> None:
        super().__init__()
        self.job = job
        self.worker = worker
        self.dialect = dialect
        self._finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._watch(receive))
        try:
            await self._answer(scope, send)
        finally:
            watcher.cancel()
            job = self.job
            if not self._finished:  # the reply was abandoned (the server cancelled this task, say)
                self.worker.cancel(job, CLIENT_GONE if job.cancel_reason is None else job.cancel_reason)
            if job.cancel_reason is not None:
                _note(
                    scope,
                    out=job.pieces,
                    cut=job.cancel_reason,
                    after=job.pieces_after_cancel,
                    in_prompt=job.cut_in_prompt,
                )

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self._finished:
                    self.worker.cancel(self.job, CLIENT_GONE)
                return

    async def _answer(self, scope: Scope, send: Send) -> None:
        job = self.job
        first = await job.next()
        if isinstance(first, Failed):
            _note(scope, refused=first.failure.code)
            await self._error(send, first.failure)
            return
        if isinstance(first, Ended):  # cancelled while it waited
            if first.cut != CLIENT_GONE:
                await self._error(send, ApiFailure(503, OUT_OF_CAPACITY, f"{first.cut}; try again later"))
            return
        assert isinstance(first, Accepted)
        outcome = Outcome(job.ask, first.plan, first.precision)
        _note(scope, max_tokens=first.plan.max_tokens, prompt=first.plan.prompt_tokens)
        if job.ask.stream:
            await self._stream(scope, send, outcome)
        else:
            await self._whole(scope, send, outcome)

    async def _error(self, send: Send, failure: ApiFailure) -> None:
        self._finished = True
        if self.dialect.streams_errors:
            await _send(send, 200, "text/event-stream", self.dialect.cut(failure))
        else:
            body = _json(self.dialect.error(failure))
            await _send(send, failure.status, "application/json", body)

    async def _stream(self, scope: Scope, send: Send, outcome: Outcome) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                ],
            }
        )
        await _chunk(send, self.dialect.start(outcome))
        while True:
            item = await self.job.next()
            if isinstance(item, Token):
                await _chunk(send, self.dialect.piece(item.text))
            elif isinstance(item, Reasoning):
                await _chunk(send, self.dialect.reasoning(item.text))
            elif isinstance(item, Ended | Failed):
                break
        if isinstance(item, Ended):
            outcome.result = item.result
        tail = self._tail(scope, outcome, item)
        self._finished = True
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _tail(self, scope: Scope, outcome: Outcome, item: Ended | Failed) -> bytes:
        _note(scope, out=outcome.completion_tokens, finish=outcome.finish)
        if isinstance(item, Failed):
            return self.dialect.cut(item.failure)
        if item.cut is None:
            return self.dialect.end(outcome)
        why = f"the reply was cut after {counted(self.job.pieces, 'token')}: {item.cut}"
        return self.dialect.cut(ApiFailure(503, INTERNAL_ERROR, why))

    async def _whole(self, scope: Scope, send: Send, outcome: Outcome) -> None:
        while True:  # the text arrives whole in the turn's result, at its end
            item = await self.job.next()
            if isinstance(item, Failed):
                await self._error(send, item.failure)
                return
            if isinstance(item, Ended):
                break
        outcome.result = item.result
        _note(scope, out=outcome.completion_tokens, finish=outcome.finish)
        if item.cut is not None:
            if item.cut != CLIENT_GONE:
                await self._error(send, ApiFailure(503, INTERNAL_ERROR, f"the reply was cut: {item.cut}"))
            return
        self._finished = True
        await _send(send, 200, "application/json", _json(self.dialect.whole(outcome)))


def _json(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _send(send: Send, status: int, content_type: str, body: bytes) -> None:
    headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _chunk(send: Send, data: bytes) -> None:
    if data:
        await send({"type": "http.response.body", "body": data, "more_body": True})


# --- the access log ---------------------------------------------------------------------------


def _note(scope: Scope, **facts: object) -> None:
    """Facts for this request's access log line."""
    notes = scope.get("wai.log")
    if isinstance(notes, dict):
        notes.update(facts)


class AccessLog:
    """One line per request on stderr, when its reply has ended: who, what, status, time, tokens.

    The path is written without its query string (the page's `/?token=` must not reach a log).
    """

    def __init__(self, app: ASGIApp, write: Callable[[str], None]) -> None:
        self.app = app
        self.write = write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        notes: dict[str, object] = {}
        scope["wai.log"] = notes

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.write(_log_line(scope, status, time.perf_counter() - started, notes))


def _log_line(scope: Scope, status: int, seconds: float, notes: dict[str, object]) -> str:
    """The line for one request. Every field a client chose (the path above all, decoded from its
    %-escapes) has its control characters escaped: a request never writes a second line, nor acts
    on the terminal that shows the log."""
    line = _log_fields(scope, status, seconds, notes)
    return log_safe(line)


def _log_fields(scope: Scope, status: int, seconds: float, notes: dict[str, object]) -> str:
    client = scope.get("client")
    who = client[0] if client else "-"
    path = scope.get("path", "")
    line = f'{who} "{scope.get("method", "")} {path}" {status or "-"} {seconds * 1000:.0f} ms'
    facts: list[str] = []
    if "prompt" in notes:
        facts.append(f"in {notes['prompt']}")
    if "cut" in notes and notes.get("in_prompt"):
        facts.append(f"cut while reading the prompt: {notes['cut']}")
    elif "cut" in notes:
        after = notes.get("after")
        more = f"; {after} decoded after the cut" if isinstance(after, int) else ""
        out = notes.get("out", 0)
        facts.append(
            f"cut after {counted(out if isinstance(out, int) else 0, 'token')}: {notes['cut']}{more}"
        )
    elif "out" in notes:
        facts.append(f"out {notes['out']}/{notes.get('max_tokens', '?')}")
        if "finish" in notes:
            facts.append(str(notes["finish"]))
    if "refused" in notes:
        facts.append(f"refused {notes['refused']}")
    if "gone" in notes:
        facts.append(str(notes["gone"]))
    return line + (" · " + " · ".join(facts) if facts else "")


def stderr_log(line: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"wai serve: {stamp} {line}\n")
        sys.stderr.flush()

"""A loopback server that speaks the Workers AI REST protocol, for tests and benchmarks.

Two ways to use it:

- scripted: `server.script(Reply.sse([...]), Reply.error(429, 3021, ...))` queues replies that
  the next requests get in order, byte by byte as written, with pauses, dropped connections or
  stalls where a test wants them;
- simulated: with nothing queued, it answers like Workers AI would, from the request itself
  (`Simulation`): a reply of `token1 token2 ...` cut at the body's `max_tokens` (256 when the
  body has none, as the real API does), usage on the last event, then `[DONE]`. With
  `thinking_tokens`, it answers like a reasoning model: OpenAI-style chunks whose deltas carry
  `thought1 thought2 ...` in `reasoning_content` before the answer's `content`, the thinking
  counted against `max_tokens` first (so a small budget leaves thinking and no answer). The model
  search (`GET .../ai/models/search`) lists `Simulation.catalog`, page by page, with `per_page`
  capped at `Simulation.max_per_page` as the real server may cap it.

Reply shapes of today's service are built by `openai_chunks` (reasoning models) and
`native_chunks` (`finish_reason` and `usage` on every event); `Reply.result` takes any JSON
value as `response` (an object in JSON mode, a number).

With a recount hook (`Simulation(recount=catalog_recount())`), every body received, scripted or
not, is recounted with the model's own vocabulary and checked against its windows: a body that
breaks one is recorded in `server.violations` and answered 413 / 5021 like the real service
(the scripted queue is left as it is), and the recounted prompt is the simulated reply's
`usage.prompt_tokens`.

Every request is recorded (`server.requests`) and every reply's fate too (`server.outcomes`:
"complete", "dropped", "reset", "client_gone"). Run it alone for manual tries or benchmarks:

    python tests/support/workers_ai_server.py --port 8787 --tokens 50
    CLOUDFLARE_BASE_URL=http://127.0.0.1:8787/client/v4 wai ask hello
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest

BASE_PATH = "/client/v4"
RUN_PATH = re.compile(r"^/client/v4/accounts/(?P<account>[^/]+)/ai/run/(?P<model>.+)$")
SEARCH_PATH = re.compile(r"^/client/v4/accounts/(?P<account>[^/]+)/ai/models/search(?:\?(?P<query>.*))?$")
QUEUE_QUERY = "?queueRequest=true"
DEFAULT_MAX_TOKENS = 256  # what the real API generates when a body has no max_tokens


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this long before the next part (the server wakes early when it is stopped)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Gate:
    """Send nothing more until the test opens it (`event.set()`) or the server stops."""

    event: threading.Event


Part = bytes | Pause | Gate
End = Literal["finish", "drop", "reset", "hang"]


@dataclass(slots=True)
class Reply:
    """One scripted reply.

    `parts` are written one by one, each flushed as its own HTTP chunk, so a test controls where
    the client's reads split. `end`: "finish" ends the body properly; "drop" closes the
    connection without ending it; "reset" aborts it (TCP RST); "hang" sends nothing more and
    keeps the connection open until the client gives up or the server stops.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    parts: list[Part] = field(default_factory=list)
    end: End = "finish"
    chunked: bool = True  # False: a Content-Length body

    @classmethod
    def sse(
        cls,
        events: Sequence[str | Mapping[str, Any]],
        *,
        done: bool = True,
        crlf: bool = False,
        space: bool = True,
        pause: float = 0.0,
        end: End = "finish",
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """A stream with one part per event; mappings are sent as JSON, strings as they are."""
        parts: list[Part] = []
        for data in sse_events(events, done=done, crlf=crlf, space=space):
            if pause and parts:
                parts.append(Pause(pause))
            parts.append(data)
        return cls(headers={"Content-Type": "text/event-stream", **(headers or {})}, parts=parts, end=end)

    @classmethod
    def raw_stream(cls, data: bytes, cuts: Sequence[int] = (), *, end: End = "finish") -> Reply:
        """An event stream written as `data` cut at the given byte offsets."""
        return cls(headers={"Content-Type": "text/event-stream"}, parts=list(split(data, cuts)), end=end)

    @classmethod
    def json(cls, payload: object, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
        body = json.dumps(payload).encode()
        return cls(
            status=status,
            headers={"Content-Type": "application/json", **(headers or {})},
            parts=[body],
            chunked=False,
        )

    @classmethod
    def result(cls, response: object, usage: Mapping[str, int] | None = None) -> Reply:
        """A non-streamed success, in the API's envelope; `response` is usually text, but JSON mode
        gives an object and some models a number."""
        result: dict[str, object] = {"response": response}
        if usage is not None:
            result["usage"] = dict(usage)
        return cls.json({"result": result, "success": True, "errors": [], "messages": []})

    @classmethod
    def gated(
        cls,
        before: Sequence[str | Mapping[str, Any]],
        gate: threading.Event,
        after: Sequence[str | Mapping[str, Any]],
    ) -> Reply:
        """A stream that sends `before`, waits for `gate`, then sends `after` and [DONE]."""
        first = sse_events(before, done=False)
        rest = sse_events(after)
        return cls(headers={"Content-Type": "text/event-stream"}, parts=[*first, Gate(gate), *rest])

    @classmethod
    def error(
        cls, status: int, code: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """An error in the API's envelope."""
        envelope = {
            "result": None,
            "success": False,
            "errors": [{"code": code, "message": message}],
            "messages": [],
        }
        return cls.json(envelope, status=status, headers=headers)

    @classmethod
    def openai_error(cls, status: int, message: str) -> Reply:
        """An error as vLLM and OpenAI-style servers send it: no Workers AI code."""
        return cls.json(
            {"error": {"message": message, "type": "BadRequestError", "code": status}}, status=status
        )

    @classmethod
    def text(cls, status: int, text: str, *, content_type: str = "text/html") -> Reply:
        return cls(
            status=status, headers={"Content-Type": content_type}, parts=[text.encode()], chunked=False
        )


def sse_events(
    events: Sequence[str | Mapping[str, Any]], *, done: bool = True, crlf: bool = False, space: bool = True
) -> list[bytes]:
    """Each event's bytes: `data: ...` and a blank line, in the requested dialect."""
    newline = "\r\n" if crlf else "\n"
    prefix = "data: " if space else "data:"
    items: list[str] = [item if isinstance(item, str) else json.dumps(item) for item in events]
    if done:
        items.append("[DONE]")
    return [f"{prefix}{item}{newline}{newline}".encode() for item in items]


def usage_dict(
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int | None = None,
    *,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if reasoning_tokens is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return usage


def price_listing(input: float, output: float, cached_input: float | None = None) -> list[dict[str, Any]]:
    """A model search `price` property: USD per million input, cached input and output tokens."""
    rates = [("per M input tokens", input), ("per M cached input tokens", cached_input)]
    rates.append(("per M output tokens", output))
    return [{"unit": unit, "price": price, "currency": "USD"} for unit, price in rates if price is not None]


def openai_chunks(
    thinking: Sequence[str] = (),
    answer: Sequence[str] = (),
    *,
    finish: str | None = "stop",
    usage: Mapping[str, Any] | None = None,
    key: str = "reasoning_content",
) -> list[dict[str, Any]]:
    """A reasoning model's stream as Workers AI sends it: `chat.completion.chunk`s whose deltas
    carry the thinking under `key` (`reasoning_content` or `reasoning`), then the answer's
    `content`; `finish_reason` and `usage` on a last chunk with no delta text (as vLLM sends)."""
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m"}
    chunks: list[dict[str, Any]] = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    for piece in thinking:
        chunks.append({**head, "choices": [{"index": 0, "delta": {key: piece, "content": None}}]})
    for piece in answer:
        chunks.append({**head, "choices": [{"index": 0, "delta": {"content": piece}}]})
    if finish is not None or usage is not None:
        last: dict[str, Any] = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        if usage is not None:
            last["usage"] = dict(usage)
        chunks.append(last)
    return chunks


def native_chunks(
    pieces: Sequence[str], *, prompt_tokens: int = 10, finish: str = "stop"
) -> list[dict[str, Any]]:
    """Workers AI's own events as newer models send them: `usage` on every event (the total so
    far) and a top-level `finish_reason` on the last one."""
    events: list[dict[str, Any]] = []
    for count, piece in enumerate(pieces, 1):
        events.append({"response": piece, "tool_calls": [], "usage": usage_dict(prompt_tokens, count)})
    events.append({"response": "", "finish_reason": finish, "usage": usage_dict(prompt_tokens, len(pieces))})
    return events


def sse_stream(events: Sequence[str | Mapping[str, Any]], **options: bool) -> bytes:
    return b"".join(sse_events(events, **options))


def split(data: bytes, cuts: Sequence[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        if 0 < cut < len(data):
            yield data[start:cut]
            start = cut
    yield data[start:]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def model(self) -> str | None:
        match = RUN_PATH.match(self.path)
        return match["model"] if match else None


def search_result(
    name: str,
    *,
    window: int | None = None,
    task: str = "Text Generation",
    description: str = "",
    **properties: object,
) -> dict[str, Any]:
    """One model as the model search lists it: `properties` as `{property_id, value}` strings."""
    values: dict[str, object] = {}
    if window is not None:
        values["context_window"] = str(window)
    values.update(properties)
    return {
        "id": f"id-{name}",
        "name": name,
        "description": description or f"{name} for tests",
        "task": {"id": "task-id", "name": task},
        "tags": [],
        "properties": [
            {"property_id": key, "value": value if not isinstance(value, bool) else str(value).lower()}
            for key, value in values.items()
        ],
    }


# (model id, body) -> (prompt tokens, the windows the body breaks: [] when none)
Recount = Callable[[str, Mapping[str, Any]], tuple[int, list[str]]]


def catalog_recount(*, require_exact: bool = True) -> Recount:
    """A recount hook that counts as wai's budget does, for the receiving end.

    The prompt is counted by `tests.support.counting.count_body` (the model family's vocabulary
    and Workers AI template) and checked by `tests.support.counting.cap_violations` against the
    windows of the catalog wai reads (built-in plus `$WAI_HOME/models.toml`, read at each
    request, so a test's own models.toml applies). `require_exact`: a count that is only an
    estimate (the vocabulary is not installed) is a violation too, so a test cannot pass on
    estimates by accident.
    """
    lock = threading.Lock()  # one count at a time: a vocabulary loads once, not once per thread

    def recount(model_id: str, body: Mapping[str, Any]) -> tuple[int, list[str]]:
        from tests.support.counting import cap_violations, count_body
        from wai.catalog.entries import load_catalog
        from wai.tokens.counters import remote_counter

        with lock:
            spec = load_catalog().get(model_id)
            prompt_tokens = count_body(spec, body)
            counter = remote_counter(spec)  # the one count_body used: vocabularies are cached
            problems = (
                [] if counter.exact or not require_exact else [f"counted by {counter.source}, not exactly"]
            )
        max_tokens = body.get("max_tokens")
        sent = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None
        return prompt_tokens, problems + cap_violations(spec, prompt_tokens, sent)

    return recount


@dataclass(slots=True)
class Simulation:
    """How the server answers when nothing is scripted: like Workers AI, from the request."""

    reply_tokens: int = 8  # the reply is "token1 token2 ... tokenN", cut at max_tokens
    thinking_tokens: int = 0  # a reasoning model: "thought1 ... thoughtN" first, in OpenAI chunks
    token_delay: float = 0.0
    api_token: str | None = None  # when set, any other bearer token gets 401 / 10000
    account_id: str | None = None  # when set, any other account gets 404 / 7003
    windows: Mapping[str, int] | None = None  # model -> context window; others get 400 / 5007
    recount: Recount | None = None  # recounts every body received; see catalog_recount
    catalog: Sequence[Mapping[str, Any]] = ()  # what the model search lists (see search_result)
    max_per_page: int | None = None  # the search's own cap on `per_page`
    page_info: bool = True  # whether search pages carry `result_info`
    echo: bool = False  # the reply is "re: " and the last message's text (a test sees which prompt)
    latency: float = 0.0  # seconds before any reply to a run request begins, scripted or not
    capacity: int | None = None  # run requests at once beyond this get 429 / 3040, like a busy model
    # Prompt caching: a request whose `x-session-affinity` was seen before has the previous
    # request's prompt (its prefix, in a conversation) reported as `cached_tokens`.
    prompt_cache: bool = False
    # The async batch queue (`?queueRequest=true`): a queued request answers this many polls
    # "queued" (the first) then "running" before its responses; a record whose last message
    # holds `queue_failing` fails inside the responses (success false).
    queue_polls: int = 2
    queue_failing: str | None = None
    queue: BatchQueue = field(default_factory=lambda: BatchQueue())
    _held: dict[str, int] = field(default_factory=dict)  # affinity -> the last prompt's tokens

    def check(self, request: RecordedRequest) -> tuple[int, list[str]] | None:
        """The recount of a run request's body: (prompt tokens, violations); None when not recounted."""
        model = request.model
        if self.recount is None or request.method != "POST" or model is None:
            return None
        try:
            body = request.json
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        return self.recount(model, body)

    def reply(self, request: RecordedRequest, *, prompt_tokens: int | None = None) -> Reply:
        """The simulated answer; `prompt_tokens` (a recount) replaces the rough count in usage."""
        if SEARCH_PATH.match(request.path):
            return self.search(request)
        match = RUN_PATH.match(request.path)
        if request.method != "POST":
            return Reply.error(405, 7001, "Method not allowed")
        if match is None:
            return Reply.error(404, 7003, "Could not route to /" + request.path.lstrip("/"))
        if self.api_token is not None and request.headers.get("authorization") != f"Bearer {self.api_token}":
            return Reply.error(401, 10000, "Authentication error")
        if self.account_id is not None and match["account"] != self.account_id:
            return Reply.error(
                404, 7003, f"Could not route to {request.path}, perhaps your object identifier is invalid?"
            )
        model = match["model"]
        try:
            body = request.json
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Reply.error(400, 5004, "Invalid data: the body is not a JSON object")
        if model.endswith(QUEUE_QUERY):
            return self.queue.submit(model.removesuffix(QUEUE_QUERY), body)
        if "request_id" in body:
            return self.queue.poll(model, body["request_id"], self)
        if self.windows is not None and model not in self.windows:
            return Reply.error(400, 5007, f"No such model {model} or task")
        if prompt_tokens is None:
            prompt_tokens = _count_prompt(body)
        max_tokens = body.get("max_tokens", DEFAULT_MAX_TOKENS)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return Reply.error(400, 5004, "Invalid data: max_tokens must be a positive integer")
        if self.windows is not None and prompt_tokens + max_tokens > self.windows[model]:
            return Reply.error(
                413,
                5021,
                f"The estimated number of input and maximum output tokens ({prompt_tokens + max_tokens}) "
                f"exceeded this model context window limit ({self.windows[model]}).",
            )
        if self.thinking_tokens:
            return self._reasoning_reply(body, prompt_tokens, max_tokens)
        count = min(self.reply_tokens, max_tokens)
        pieces = [f"token{i}" if i == 1 else f" token{i}" for i in range(1, count + 1)]
        if self.echo:
            pieces = [f"re: {_last_text(body)}"]
            count = 1
        usage = usage_dict(prompt_tokens, count, cached_tokens=self._cached(request, prompt_tokens))
        if not body.get("stream"):
            return Reply.result("".join(pieces), usage)
        events: list[Mapping[str, Any]] = [{"response": piece, "p": "abcdef"} for piece in pieces]
        events.append({"response": "", "usage": usage})
        return Reply.sse(events, pause=self.token_delay)

    def _cached(self, request: RecordedRequest, prompt_tokens: int) -> int | None:
        """With `prompt_cache`: how much of this prompt the affinity's last request left cached."""
        affinity = request.headers.get("x-session-affinity")
        if not self.prompt_cache:
            return None
        if not affinity:
            return 0
        cached = min(self._held.get(affinity, 0), prompt_tokens)
        self._held[affinity] = prompt_tokens
        return cached

    def _reasoning_reply(self, body: Mapping[str, Any], prompt_tokens: int, max_tokens: int) -> Reply:
        """Thinking, then the answer, both counted against max_tokens (the thinking first)."""
        thought = min(self.thinking_tokens, max_tokens)
        count = min(self.reply_tokens, max_tokens - thought)
        thinking = [f"thought{i}" if i == 1 else f" thought{i}" for i in range(1, thought + 1)]
        answer = [f"token{i}" if i == 1 else f" token{i}" for i in range(1, count + 1)]
        finish = "length" if thought + count >= max_tokens else "stop"
        usage = usage_dict(prompt_tokens, thought + count, reasoning_tokens=thought)
        if not body.get("stream"):
            message = {
                "role": "assistant",
                "reasoning_content": "".join(thinking),
                "content": "".join(answer),
            }
            completion = {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            }
            return Reply.json({"result": completion, "success": True, "errors": [], "messages": []})
        return Reply.sse(openai_chunks(thinking, answer, finish=finish, usage=usage), pause=self.token_delay)

    def search(self, request: RecordedRequest) -> Reply:
        """One page of the model search: `page` and `per_page` from the query, 1-based."""
        from urllib.parse import parse_qs

        match = SEARCH_PATH.match(request.path)
        assert match is not None
        if request.method != "GET":
            return Reply.error(405, 7001, "Method not allowed")
        if self.api_token is not None and request.headers.get("authorization") != f"Bearer {self.api_token}":
            return Reply.error(401, 10000, "Authentication error")
        if self.account_id is not None and match["account"] != self.account_id:
            return Reply.error(404, 7003, f"Could not route to {request.path}")
        query = parse_qs(match["query"] or "")
        page = int(query.get("page", ["1"])[0])
        per_page = int(query.get("per_page", ["20"])[0])
        if self.max_per_page is not None:
            per_page = min(per_page, self.max_per_page)
        task = query.get("task", [None])[0]
        listed = [m for m in self.catalog if task is None or m.get("task", {}).get("name") == task]
        results = listed[(page - 1) * per_page : page * per_page]
        envelope: dict[str, object] = {"result": results, "success": True, "errors": [], "messages": []}
        if self.page_info:
            envelope["result_info"] = {
                "page": page,
                "per_page": per_page,
                "count": len(results),
                "total_count": len(listed),
            }
        return Reply.json(envelope)


@dataclass(slots=True)
class QueuedJob:
    model: str
    requests: list[dict[str, Any]]
    polls: int = 0


class BatchQueue:
    """Workers AI's async batch queue: requests queued, then running, then done with their
    responses. `asked` holds every record's last message as submitted (a test sees none twice);
    `submissions` the number of requests in each submit; `polls` every poll's request id."""

    def __init__(self) -> None:
        self.jobs: dict[str, QueuedJob] = {}
        self.asked: list[str] = []
        self.submissions: list[int] = []
        self.polls: list[str] = []
        self._lock = threading.Lock()

    def submit(self, model: str, body: Mapping[str, Any]) -> Reply:
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests or not all(isinstance(r, dict) for r in requests):
            return Reply.error(400, 5004, "Invalid data: 'requests' must be a list of request objects")
        with self._lock:
            request_id = f"req-{len(self.jobs) + 1:04d}"
            self.jobs[request_id] = QueuedJob(model, [dict(r) for r in requests])
            self.asked.extend(_last_text(r) for r in requests)
            self.submissions.append(len(requests))
        return Reply.json(_envelope({"status": "queued", "request_id": request_id, "model": model}))

    def poll(self, model: str, request_id: object, simulation: Simulation) -> Reply:
        with self._lock:
            self.polls.append(str(request_id))
            job = self.jobs.get(str(request_id))
            if job is None or job.model != model:
                return Reply.error(404, 5018, f"Request {request_id} not found")
            job.polls += 1
            if job.polls <= simulation.queue_polls:
                status = "queued" if job.polls == 1 else "running"
                return Reply.json(_envelope({"status": status, "request_id": request_id}))
        responses = [self._response(n, r, simulation) for n, r in enumerate(job.requests)]
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for response in responses:
            for key, value in response.get("result", {}).get("usage", {}).items():
                usage[key] = usage.get(key, 0) + value
        return Reply.json(_envelope({"responses": responses, "usage": usage}))

    @staticmethod
    def _response(number: int, body: Mapping[str, Any], simulation: Simulation) -> dict[str, Any]:
        text = _last_text(body)
        response: dict[str, Any] = {"id": number, "external_reference": body.get("external_reference")}
        if simulation.queue_failing is not None and simulation.queue_failing in text:
            return {
                **response,
                "success": False,
                "result": {"errors": [{"code": 5006, "message": "Inference failed on this input"}]},
            }
        max_tokens = body.get("max_tokens", DEFAULT_MAX_TOKENS)
        count = min(simulation.reply_tokens, max_tokens)
        reply = " ".join(f"token{i}" for i in range(1, count + 1))
        if simulation.echo:
            reply, count = f"re: {text}", 1
        usage = usage_dict(_count_prompt(body), count)
        return {**response, "success": True, "result": {"response": reply, "usage": usage}}


def _envelope(result: object) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": []}


def _last_text(body: Mapping[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return str(messages[-1].get("content", ""))
    return str(body.get("prompt", ""))


def _count_prompt(body: Mapping[str, Any]) -> int:
    """A rough count (words plus a few per message): enough for a window check in tests."""
    messages = body.get("messages")
    if isinstance(messages, list):
        texts = [str(m.get("content", "")) for m in messages if isinstance(m, dict)]
        return sum(len(text.split()) + 4 for text in texts)
    prompt = body.get("prompt")
    return len(str(prompt).split()) + 4 if prompt else 0


Responder = Callable[[RecordedRequest], Reply]


class WorkersAIServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 at a free port. Use it as a context manager."""

    def __init__(self, simulation: Simulation | None = None, *, port: int = 0) -> None:
        self.simulation = simulation or Simulation()
        self.requests: list[RecordedRequest] = []
        self.outcomes: list[str] = []
        self.errors: list[str] = []  # tracebacks from handler threads: a bug in the server or a test
        self.violations: list[str] = []  # "MODEL: what the body broke", from the recount hook
        self.recounts: list[tuple[RecordedRequest, int]] = []  # each recounted request, its prompt tokens
        self.arrivals: list[float] = []  # time.monotonic() of each run request's arrival
        self.active = 0  # run requests being answered now
        self.most_active = 0  # the most run requests answered at once
        self._queue: collections.deque[Reply | Responder] = collections.deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """What CLOUDFLARE_BASE_URL should be."""
        return f"http://127.0.0.1:{self.port}{BASE_PATH}"

    def client_env(self, token: str, account: str = "acct123") -> dict[str, str]:
        """What `wai` needs to use this server as Workers AI, with this token and account."""
        return {
            "CLOUDFLARE_BASE_URL": self.base_url,
            "CLOUDFLARE_ACCOUNT_ID": account,
            "CLOUDFLARE_API_TOKEN": token,
        }

    def start(self) -> WorkersAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> WorkersAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply | Responder) -> None:
        """Queue replies (or functions of the request) for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def clear_script(self) -> None:
        with self._lock:
            self._queue.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def forget(self) -> None:
        """Clear what was recorded (a server shared by several tests starts each one clean)."""
        with self._lock:
            for record in (self.requests, self.outcomes, self.errors, self.violations, self.recounts):
                record.clear()
            self.arrivals.clear()
            self.most_active = 0

    def wait_outcomes(self, count: int, timeout: float = 5.0) -> list[str]:
        """Block until `count` replies have ended one way or another; returns all outcomes so far."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.outcomes) >= count, timeout=timeout)
            return list(self.outcomes)

    # called from handler threads

    def _next_reply(self, request: RecordedRequest) -> Reply:
        try:
            checked = self.simulation.check(request)
        except Exception:
            with self._lock:
                self.requests.append(request)
                self.errors.append(traceback.format_exc())
            return Reply.error(500, 5000, "the test server could not recount this request")
        with self._lock:
            self.requests.append(request)
            if checked is not None:
                self.recounts.append((request, checked[0]))
                self.violations.extend(f"{request.model}: {problem}" for problem in checked[1])
            if checked is not None and checked[1]:
                # Refused before any scripted reply, as the real service checks windows first.
                return Reply.error(
                    413,
                    5021,
                    f"The estimated number of input and maximum output tokens exceeded this model's "
                    f"limits: {'; '.join(checked[1])}.",
                )
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None:
            return self.simulation.reply(request, prompt_tokens=checked[0] if checked else None)
        return scripted if isinstance(scripted, Reply) else scripted(request)

    def _record(self, outcome: str) -> None:
        with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()

    def _pause(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; False when it is."""
        return not self._stopping.wait(seconds)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a batch of many workers connects at once
    block_on_close = False  # a client holding a kept-alive connection must not block stop()
    owner: WorkersAIServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up between requests is normal; anything else is kept for a test to see.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            self.owner.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle kept-alive connections end on their own
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Each part must leave as its own segment, or the client's reads would not split where asked.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read `server.requests` instead

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_CONNECT(self) -> None:
        # Recorded like any request: a test that points HTTPS_PROXY here sees every attempt to
        # reach a real https server (Cloudflare's API) that a command should never make.
        self._serve()

    def _serve(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = RecordedRequest(self.command, self.path, headers, body)
        running = request.model is not None
        simulation = owner.simulation
        over = False
        counted = [running]  # still among the active requests

        def ended() -> None:
            with owner._lock:
                if counted[0]:
                    counted[0] = False
                    owner.active -= 1

        if running:
            with owner._lock:
                owner.arrivals.append(time.monotonic())
                owner.active += 1
                owner.most_active = max(owner.most_active, owner.active)
                over = simulation.capacity is not None and owner.active > simulation.capacity
        try:
            if over:
                with owner._lock:
                    owner.requests.append(request)
                reply = Reply.error(429, 3040, "Capacity temporarily exceeded, please try again.")
            else:
                reply = owner._next_reply(request)
            if running and simulation.latency:
                owner._pause(simulation.latency)
            try:
                outcome = self._send(reply, owner, ended)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
                outcome = "client_gone"
                self.close_connection = True
        finally:
            ended()
        owner._record(outcome)

    def _send(self, reply: Reply, owner: WorkersAIServer, ended: Callable[[], None]) -> str:
        """`ended` is called as a finished reply's last part goes out: from then on the client may
        have all it waits for (a stream's [DONE]) and send its next request before this thread
        gets any further, which must not count as one request more at once."""
        data_parts = [part for part in reply.parts if isinstance(part, bytes)]
        last = next((part for part in reversed(data_parts) if part), None)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(sum(len(part) for part in data_parts)))
        if reply.end != "finish":
            self.send_header("Connection", "close")
        self.end_headers()
        for part in reply.parts:
            if isinstance(part, Pause):
                if not owner._pause(part.seconds):
                    return "stopped"
            elif isinstance(part, Gate):
                while not part.event.wait(0.05):
                    if owner._stopping.is_set():
                        return "stopped"
            elif part:
                if part is last and reply.end == "finish":
                    ended()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if reply.chunked else part)
        if reply.end == "finish":
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
            return "complete"
        self.close_connection = True
        if reply.end == "drop":
            self.connection.shutdown(socket.SHUT_RDWR)
            return "dropped"
        if reply.end == "reset":
            # Linger 0: close() sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return "reset"
        return self._hang(owner)

    def _hang(self, owner: WorkersAIServer) -> str:
        """Send nothing until the client hangs up (a read sees EOF) or the server stops."""
        self.connection.settimeout(0.05)
        while not owner._stopping.is_set():
            try:
                if self.connection.recv(1) == b"":
                    return "client_gone"
            except TimeoutError:
                continue
            except OSError:
                return "client_gone"
        return "stopped"


@pytest.fixture
def workers_ai_server() -> Iterator[WorkersAIServer]:
    """A running server with the default simulation; script it per test."""
    with WorkersAIServer() as server:
        yield server


def main() -> None:
    parser = argparse.ArgumentParser(description="A loopback Workers AI server for trying wai by hand.")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--tokens", type=int, default=50, help="tokens per reply (cut at max_tokens)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply begins")
    parser.add_argument("--thinking", type=int, default=0, help="a reasoning model: thinking tokens first")
    parser.add_argument(
        "--recount", action="store_true", help="recount each body with wai's vocabularies; 413 over a cap"
    )
    args = parser.parse_args()
    recount = catalog_recount(require_exact=False) if args.recount else None
    simulation = Simulation(
        reply_tokens=args.tokens,
        token_delay=args.delay,
        thinking_tokens=args.thinking,
        recount=recount,
        latency=args.latency,
    )
    server = WorkersAIServer(simulation, port=args.port)
    print(f"CLOUDFLARE_BASE_URL={server.base_url}", flush=True)
    with server, contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()

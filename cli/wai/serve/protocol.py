"""What `wai serve` reads and writes: request bodies checked into an Ask, replies in each API's shape.

Two protocols over the same asks: Workers AI's `ai/run` (the Cloudflare envelope, `data:
{"response": ...}` events) and the OpenAI-compatible chat completions (`chat.completion.chunk`
events). Bad input is an ApiFailure with Workers AI's status and code; nothing here runs a model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wai.backends.registry import backend_class
from wai.catalog.entries import ModelSpec
from wai.conversation import Message, ReasoningEffort, Role
from wai.sampling import SAMPLING_OPTIONS, Sampling, span_on
from wai.schema import Schema

# Workers AI's error codes, as the client side of the protocol knows them.
AUTH_ERROR = 10000
NO_SUCH_MODEL = 5007
INVALID_INPUT = 5004
WINDOW_EXCEEDED = 5021
OUT_OF_CAPACITY = 3040
INTERNAL_ERROR = 3043
BAD_ROUTE = 7003

# Workers AI generates this many tokens when a body has no max_tokens; the server does the same.
WORKERS_AI_DEFAULT_MAX_TOKENS = 256
DONE = b"data: [DONE]\n\n"

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}


class ApiFailure(Exception):
    """A refusal: HTTP status, Workers AI's error code, and one line saying what to change."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> ApiFailure:
    return ApiFailure(400, INVALID_INPUT, message)


@dataclass(frozen=True, slots=True)
class Ask:
    """One checked request: what to run and how; `max_tokens` None means the model's output window."""

    model: ModelSpec
    messages: tuple[Message, ...]
    max_tokens: int | None
    sampling: Sampling = field(default_factory=Sampling)
    stream: bool = False
    reject_if_busy: bool = False
    include_usage: bool = False  # OpenAI: a usage chunk at the end of the stream
    reasoning_effort: ReasoningEffort | None = None
    raw: bool = False  # the one user message is the whole prompt: no chat template
    schema: Schema | None = None  # response_format: the reply is held to it by the grammar


# --- reading bodies ---------------------------------------------------------------------------


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise invalid("the body is not JSON") from None
    except ValueError as exc:  # Python reads no integer of more than 4300 digits
        too_long = "digits" in str(exc) and "limit" in str(exc)
        why = "a number in the body has too many digits" if too_long else "the body is not JSON"
        raise invalid(why) from None
    except RecursionError:  # the parser recurses once per level of arrays and objects
        raise invalid("the body nests arrays or objects too deeply to be read") from None
    if not isinstance(body, dict):
        raise invalid("the body must be a JSON object")
    return body


def model_for(name: str, served: Mapping[str, ModelSpec]) -> ModelSpec:
    spec = served.get(name)
    if spec is None:
        known = ", ".join(sorted(served)) or "none"
        raise ApiFailure(400, NO_SUCH_MODEL, f"No such model {shown_name(name)} (this server runs: {known})")
    return spec


def shown_name(name: str) -> str:
    """A name from a request, fit to be echoed: a lone surrogate in it cannot be encoded."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def workers_ai_ask(body: Mapping[str, Any], spec: ModelSpec) -> Ask:
    """A `POST .../ai/run/{model}` body: `prompt` or `messages`, with Workers AI's options and ranges."""
    prompt, messages = body.get("prompt"), body.get("messages")
    if prompt is not None and messages is not None:
        raise invalid("send either prompt or messages, not both")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt:
            raise invalid("prompt must be a non-empty string")
        convo: tuple[Message, ...] = (Message("user", _unicode(prompt, "prompt")),)
    elif messages is not None:
        convo = _messages(messages)
    else:
        raise invalid("the body needs prompt (a string) or messages (a list of {role, content})")
    raw = _flag(body, "raw")
    if raw and prompt is None:
        raise invalid("raw needs prompt (the text sent verbatim), not messages")
    if body.get("lora") is not None:
        raise invalid("LoRA adapters are not supported by wai serve")
    _refuse_unsupported(body, ("tools", "functions"))
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise invalid("options must be an object")
    max_tokens = _int(body, "max_tokens", 1, None)
    return Ask(
        model=spec,
        messages=convo,
        max_tokens=WORKERS_AI_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        sampling=_sampling(body),
        stream=_flag(body, "stream"),
        reject_if_busy=bool(options and _flag(options, "rejectIfBusy")),
        reasoning_effort=_effort(body),
        raw=raw,
        schema=response_format(body, openai=False),
    )


def openai_ask(body: Mapping[str, Any], served: Mapping[str, ModelSpec]) -> Ask:
    """A chat completions body: `model` and `messages`, the sampling options, `stream_options`."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise invalid("model must name one of the models this server runs (GET /v1/models)")
    spec = model_for(name, served)
    if "messages" not in body:
        raise invalid("messages is missing (a list of {role, content})")
    if body.get("n") is not None and (isinstance(body["n"], bool) or body["n"] != 1):
        raise invalid("n must be 1: wai serve writes one reply per request")
    _refuse_unsupported(body, ("tools", "functions", "stop", "logprobs", "logit_bias"))
    max_tokens = _int(body, "max_completion_tokens", 1, None)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1, None)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise invalid("stream_options must be an object")
    return Ask(
        model=spec,
        messages=_messages(body["messages"]),
        max_tokens=max_tokens,
        sampling=_sampling(body),
        stream=_flag(body, "stream"),
        include_usage=bool(stream_options and _flag(stream_options, "include_usage")),
        reasoning_effort=_effort(body),
        schema=response_format(body, openai=True),
    )


def response_format(body: Mapping[str, Any], *, openai: bool) -> Schema | None:
    """`response_format`: `json_object` (any JSON object) or `json_schema`, whose schema is the
    value itself on Workers AI's route and its `schema` on OpenAI's; checked as JSON Schema and
    against what llama.cpp's grammar can hold, so a request it could not honour is refused (400)
    before it waits in the queue. None for `text` or no response_format."""
    raw = body.get("response_format")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid('response_format must be an object such as {"type": "json_object"}')
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return Schema({"type": "object"})
    if kind != "json_schema":
        raise invalid("response_format.type must be text, json_object or json_schema")
    document = raw.get("json_schema")
    if openai and isinstance(document, dict):
        document = document.get("schema")
    where = "response_format.json_schema" + (".schema" if openai else "")
    if not isinstance(document, dict):
        raise invalid(f"{where} must be a JSON Schema object")
    from wai.errors import UsageError
    from wai.schema.check import check_schema
    from wai.schema.grammar import gbnf

    try:
        check_schema(document, option=where)
        gbnf(document, option=where)
    except UsageError as error:
        raise invalid(str(error)) from None
    return Schema(document)


def _refuse_unsupported(body: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Options wai serve cannot honour are refused, never ignored: a reply that silently broke the
    asked-for JSON shape or tool call would be worse than a clear 400."""
    for key in keys:
        if body.get(key):
            raise invalid(f"{key} is not supported by wai serve")


def _messages(raw: object) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise invalid("messages must be a non-empty list of {role, content}")
    out: list[Message] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise invalid(f"messages[{i}] must be an object with role and content")
        role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise invalid(f"messages[{i}].role must be system, developer, user or assistant")
        out.append(Message(role, _unicode(_content(item.get("content"), i), f"messages[{i}].content")))
    if out[-1].role == "assistant":
        raise invalid("the last message must not be the assistant's: there would be nothing to answer")
    return tuple(out)


def _content(raw: object, i: int) -> str:
    if isinstance(raw, str):
        return raw
    # OpenAI's content parts: text parts are joined, anything else has no meaning for a text model.
    if isinstance(raw, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in raw):
        texts = [p.get("text") for p in raw]
        if all(isinstance(t, str) for t in texts):
            return "".join(t for t in texts if isinstance(t, str))
    raise invalid(f"messages[{i}].content must be a string")


def _unicode(text: str, what: str) -> str:
    """JSON's \\u escapes can name half of a surrogate pair alone: no encoder takes that text,
    the tokenizer among them, so it is refused here (`wai ask` does not send such text either)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = ord(text[exc.start])
        raise invalid(
            f"{what} is not valid Unicode: a lone surrogate at character {exc.start} (U+{char:04X}); "
            "send whole characters (a surrogate pair, or the character itself)"
        ) from None
    return text


def _sampling(body: Mapping[str, Any]) -> Sampling:
    """The sampling options of a body, within Workers AI's ranges: the API this server speaks."""
    ranges = backend_class("remote").sampling_ranges
    values: dict[str, float | int | None] = {}
    for option in SAMPLING_OPTIONS:
        span = span_on(option, ranges)
        if option.kind is int:
            values[option.name] = _int(body, option.name, int(span.low), int(span.high))
        else:
            values[option.name] = _number(body, option.name, span.low, span.high)
    if values["repetition_penalty"] == 0:
        # llama.cpp divides by it: the one value in Workers AI's range this server cannot run.
        raise invalid("repetition_penalty must be above 0 (1 leaves the text as it is)")
    return Sampling(**values)  # type: ignore[arg-type]


_EFFORTS: dict[str, ReasoningEffort] = {"low": "low", "medium": "medium", "high": "high"}


def _effort(body: Mapping[str, Any]) -> ReasoningEffort | None:
    value = body.get("reasoning_effort")
    if value is None:
        return None
    effort = _EFFORTS.get(value) if isinstance(value, str) else None
    if effort is None:
        raise invalid("reasoning_effort must be low, medium or high")
    return effort


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{key} must be true or false")
    return value


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    # An int is compared as it is: one too large for a float must not overflow on the way.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{key} must be a number from {low:g} to {high:g}")
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(f"{key} must be a number from {low:g} to {high:g}")
    if not low <= value <= high:
        raise invalid(f"{key} must be from {low:g} to {high:g}, got {_shown(value)}")
    return float(value)


def _int(body: Mapping[str, Any], key: str, low: int, high: int | None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{key} must be a whole number {span}")
    if value < low or (high is not None and value > high):
        raise invalid(f"{key} must be a whole number {span}, got {_shown(value)}")
    return value


def _shown(value: float) -> str:
    """A number for a message: a huge integer by its size, not its hundreds of digits."""
    if isinstance(value, int) and abs(value) >= 10**16:
        return f"a number of {len(str(abs(value)))} digits"
    return f"{value:g}"


# --- writing replies --------------------------------------------------------------------------


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def envelope(result: object, *, extra: Mapping[str, object] | None = None) -> dict[str, object]:
    """Cloudflare's success envelope."""
    body: dict[str, object] = {"result": result, "success": True, "errors": [], "messages": []}
    if extra:
        body.update(extra)
    return body


def error_envelope(failure: ApiFailure) -> dict[str, object]:
    return {
        "result": None,
        "success": False,
        "errors": [{"code": failure.code, "message": failure.message}],
        "messages": [],
    }


def openai_error(failure: ApiFailure) -> dict[str, object]:
    """OpenAI's `error` object, with Cloudflare's `errors` beside it for clients that read those."""
    kind = {401: "authentication_error", 429: "rate_limit_error"}.get(failure.status, "invalid_request_error")
    if failure.status >= 500:
        kind = "server_error"
    body = error_envelope(failure)
    body["error"] = {"message": failure.message, "type": kind, "code": str(failure.code), "param": None}
    return body


def sse(data: object) -> bytes:
    """One server-sent event: a `data:` line and a blank line, as Workers AI writes them."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


def models_search(
    served: Sequence[ModelSpec], *, page: int, per_page: int, search: str | None
) -> dict[str, object]:
    """`GET .../ai/models/search` in Cloudflare's shape: `properties` as {property_id, value} pairs."""
    chosen = [spec for spec in served if not search or search.lower() in spec.id.lower()]
    start = (page - 1) * per_page
    results = [_search_result(spec) for spec in chosen[start : start + per_page]]
    return envelope(
        results,
        extra={
            "result_info": {
                "page": page,
                "per_page": per_page,
                "count": len(results),
                "total_count": len(chosen),
            }
        },
    )


def _search_result(spec: ModelSpec) -> dict[str, object]:
    import uuid

    # `context_window` is the input window, as the catalog has it (the tighter of Cloudflare's
    # two readings); the older pair of properties carries both windows for clients that read them.
    properties = [
        ("context_window", spec.context_window),
        ("max_input_tokens", spec.context_window),
        ("max_total_tokens", spec.total_context),
        ("max_output_tokens", spec.max_output),
        # Every served model holds response_format with the grammar: said so, a refreshed `wai`
        # sends it `--schema` (it refuses a model whose listing gives no JSON mode).
        ("json_mode", "true"),
    ]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"wai-serve:{spec.id}")),
        "name": spec.id,
        "description": spec.description or f"{spec.id} on llama.cpp",
        "source": 1,
        "task": {
            "id": "c329a1f9-323d-4e91-b2aa-582dd4188d34",
            "name": "Text Generation",
            "description": "Family of generative text models.",
        },
        "tags": [],
        "properties": [{"property_id": key, "value": str(value)} for key, value in properties],
    }


def openai_models(served: Sequence[ModelSpec]) -> dict[str, object]:
    return {"object": "list", "data": [openai_model(spec) for spec in served]}


def openai_model(spec: ModelSpec) -> dict[str, object]:
    """One model as `GET /v1/models` lists it and `GET /v1/models/{id}` answers it."""
    return {
        "id": spec.id,
        "object": "model",
        "created": 0,
        "owned_by": "wai",
        "context_window": spec.context_window,
        "max_output": spec.max_output,
        "total_context": spec.total_context,
    }

"""`wai serve` takes `response_format` on both routes and holds the reply to it with the grammar."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.serve_process import ServeProcess, sse_data, stream_text
from wai.schema.reply import parse_reply

TINY = "@cf/test/tiny-q8_0"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "kind": {"enum": ["a", "b"]}},
    "required": ["ok", "kind"],
    "additionalProperties": False,
}
# A fixed seed: under a grammar the tiny model's tokens are alike, and greedy picks could run a free
# object's key to the cap; this seed closes it (the same reply whole or streamed).
SEEDED = {"temperature": 0.6, "seed": 1, "max_tokens": 60}


def _workers_ai(server: ServeProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.run_url(TINY), json=body, headers=server.headers, timeout=60)


def _openai(server: ServeProcess, body: dict[str, Any]) -> httpx.Response:
    url = server.origin + "/v1/chat/completions"
    return httpx.post(url, json={"model": TINY, **body}, headers=server.headers, timeout=60)


def test_workers_ai_route_answers_json_mode_with_the_object(wai_serve: ServeProcess) -> None:
    format_ = {"type": "json_schema", "json_schema": SCHEMA}
    reply = _workers_ai(wai_serve, {"prompt": "hi", "response_format": format_, **SEEDED})
    assert reply.status_code == 200, reply.text
    response = reply.json()["result"]["response"]
    assert isinstance(response, dict)
    parse_reply(json.dumps(response), SCHEMA, finish_reason="stop")
    streamed = _workers_ai(wai_serve, {"prompt": "hi", "response_format": format_, "stream": True, **SEEDED})
    text, _ = stream_text(sse_data(streamed.text))
    assert json.loads(text) == response


@pytest.mark.parametrize("stream", [False, True])
def test_openai_route_takes_json_schema_and_json_object(wai_serve: ServeProcess, stream: bool) -> None:
    formats = (
        {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA, "strict": True}},
        {"type": "json_object"},
    )
    for format_ in formats:
        reply = _openai(
            wai_serve,
            {
                "messages": [{"role": "user", "content": "hi"}],
                "response_format": format_,
                "stream": stream,
                **SEEDED,
            },
        )
        assert reply.status_code == 200, reply.text
        if stream:
            pieces = [json.loads(d) for d in sse_data(reply.text) if d != "[DONE]"]
            text = "".join(c["choices"][0]["delta"].get("content", "") for c in pieces if c.get("choices"))
        else:
            text = reply.json()["choices"][0]["message"]["content"]
        value = json.loads(text)
        assert isinstance(value, dict)
        if format_["type"] == "json_schema":
            parse_reply(text, SCHEMA, finish_reason="stop")


@pytest.mark.parametrize(
    ("format_", "says"),
    [
        ({"type": "json_schema", "json_schema": {"type": "integer", "minimum": 3}}, "cannot hold 'minimum'"),
        ({"type": "json_schema", "json_schema": {"type": "int"}}, "not valid JSON Schema (Draft 2020-12)"),
        ({"type": "xml"}, "response_format.type must be text, json_object or json_schema"),
        ("json", "response_format must be an object"),
    ],
)
def test_a_response_format_it_cannot_hold_is_a_400_naming_why(
    wai_serve: ServeProcess, format_: object, says: str
) -> None:
    reply = _workers_ai(wai_serve, {"prompt": "hi", "response_format": format_})
    assert reply.status_code == 400, reply.text
    assert says in reply.json()["errors"][0]["message"]


def test_workers_ai_route_answers_a_string_as_its_json_text_and_says_a_cut(wai_serve: ServeProcess) -> None:
    # wai reads a JSON-mode `response` that is a string as the reply's JSON text: the bare value
    # ("a") was read as text that is not JSON, exit 4 for a reply the grammar held.
    format_ = {"type": "json_schema", "json_schema": {"enum": ["a", "b"]}}
    reply = _workers_ai(wai_serve, {"prompt": "hi", "response_format": format_, **SEEDED})
    assert reply.status_code == 200, reply.text
    result = reply.json()["result"]
    assert json.loads(result["response"]) in ("a", "b") and result["finish_reason"] == "stop"
    cut = _workers_ai(
        wai_serve, {"prompt": "hi", "response_format": {"type": "json_object"}, "max_tokens": 2}
    )
    assert cut.json()["result"]["finish_reason"] == "length"  # as structured-output.md says

"""stream_turn: a real Workers AI backend against the loopback server, into real sinks."""

from __future__ import annotations

import io
import json

from tests.support.workers_ai_server import Reply, WorkersAIServer
from wai.backends.base import BackendSettings
from wai.backends.request import Request
from wai.backends.workers_ai.backend import WorkersAI
from wai.backends.workers_ai.stream import TOOL_CALL_NOTICE
from wai.catalog.entries import load_catalog
from wai.conversation import Message, Timeouts
from wai.errors import IncompleteReply
from wai.render.jsonl import JsonlSink
from wai.render.plain import PlainSink
from wai.sampling import Sampling
from wai.settings import Credentials
from wai.turn.stream import stream_turn, turn_info

MODEL = "@cf/meta/llama-2-7b-chat-int8"


def _request() -> Request:
    return Request(
        model=load_catalog().get(MODEL),
        messages=(Message("user", "weather in NYC?"),),
        max_tokens=50,
        sampling=Sampling(),
        stream=True,
        timeouts=Timeouts(connect=2.0, read=5.0),
    )


def test_notices_are_collected_in_the_result_and_fed_to_the_sink(workers_ai_server: WorkersAIServer) -> None:
    call = {"response": "Checking.", "tool_calls": [{"name": "weather", "arguments": {"city": "NYC"}}]}
    workers_ai_server.script(Reply.sse([call, {"response": " Done."}]))
    out = io.StringIO()
    request = _request()
    settings = BackendSettings(Credentials("acct", "token-1234", workers_ai_server.base_url))
    with WorkersAI("remote", settings) as backend:
        result = stream_turn(backend, request, JsonlSink(out), turn_info(backend, request))
    assert result.text == "Checking. Done."
    assert result.notices == [TOOL_CALL_NOTICE]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line for line in lines if line["type"] == "notice"] == [
        {"type": "notice", "text": TOOL_CALL_NOTICE}
    ]
    assert lines[-1]["type"] == "finish" and lines[-1]["notices"] == [TOOL_CALL_NOTICE]


def test_a_sink_that_shows_only_text_ignores_notices(workers_ai_server: WorkersAIServer) -> None:
    workers_ai_server.script(Reply.sse([{"response": "", "tool_calls": [{"name": "f"}]}, {"response": "ok"}]))
    out = io.StringIO()
    request = _request()
    settings = BackendSettings(Credentials("acct", "token-1234", workers_ai_server.base_url))
    with WorkersAI("remote", settings) as backend:
        result = stream_turn(backend, request, PlainSink(out), turn_info(backend, request))
    assert out.getvalue() == "ok\n"
    assert result.notices == [TOOL_CALL_NOTICE]


def test_a_stream_that_breaks_is_a_result_with_its_error_and_the_text_kept(
    workers_ai_server: WorkersAIServer,
) -> None:
    workers_ai_server.script(Reply.sse([{"response": "Half an"}], done=False, end="drop"))
    out = io.StringIO()
    request = _request()
    settings = BackendSettings(Credentials("acct", "token-1234", workers_ai_server.base_url))
    with WorkersAI("remote", settings) as backend:
        result = stream_turn(backend, request, PlainSink(out), turn_info(backend, request))
    assert isinstance(result.error, IncompleteReply)
    assert (result.text, result.finish_reason) == ("Half an", "error")
    assert result.answered and not result.interrupted  # the text that came is part of the conversation


def test_a_request_refused_before_any_text_is_no_reply(workers_ai_server: WorkersAIServer) -> None:
    workers_ai_server.script(Reply.error(400, 7000, "No route for that URI"))
    request = _request()
    settings = BackendSettings(Credentials("acct", "token-1234", workers_ai_server.base_url))
    with WorkersAI("remote", settings) as backend:
        result = stream_turn(backend, request, PlainSink(io.StringIO()), turn_info(backend, request))
    assert result.error is not None and result.error.exit_code == 1
    assert result.text == "" and not result.answered

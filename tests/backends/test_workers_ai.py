"""The Workers AI backend against a real HTTP server on 127.0.0.1: streams, errors, retries, timeouts."""

from __future__ import annotations

import dataclasses
import email.utils
import socket
import time
import zlib
from collections.abc import Mapping
from typing import Any

import pytest

from tests.backends.conftest import ACCOUNT_ID, API_TOKEN, MODEL, Harness, Outcome, make_request
from tests.support.workers_ai_server import (
    Part,
    Pause,
    RecordedRequest,
    Reply,
    Simulation,
    WorkersAIServer,
    sse_events,
    sse_stream,
)
from wai.backends.http.sse import SSEReader
from wai.backends.registry import backend_named
from wai.backends.workers_ai.sampling import RANGES
from wai.backends.workers_ai.stream import TOOL_CALL_NOTICE, WorkersAIStream, _retry_after
from wai.errors import (
    EXIT_FAILURE,
    EXIT_USAGE,
    EXIT_WINDOW,
    AllowanceSpent,
    BackendError,
    ConfigError,
    IncompleteReply,
    WindowError,
)
from wai.events import Finish, Notice, Token, Usage
from wai.sampling import SAMPLING_OPTIONS, Sampling, SamplingOption
from wai.settings import Credentials

TRICKY = ["na", "ïve ", "日本", " 🎉", "!"]
USAGE = {"prompt_tokens": 31, "completion_tokens": 5, "total_tokens": 36}


def events_for(pieces: list[str], usage: Mapping[str, int] | None = USAGE) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"response": piece} for piece in pieces]
    if usage is not None:
        events.append({"response": "", "usage": dict(usage)})
    return events


# -- streams split anywhere -------------------------------------------------------------------


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_a_stream_cut_at_every_byte_position_gives_the_same_text(harness: Harness, crlf: bool) -> None:
    data = sse_stream(events_for(TRICKY), crlf=crlf)
    assert len(data) > len("".join(TRICKY).encode())  # multi-byte characters are in there
    for cut in range(1, len(data)):
        harness.server.script(Reply.raw_stream(data, [cut]))
        outcome = harness.run()
        assert outcome.error is None, (cut, outcome.error)
        assert outcome.text == "naïve 日本 🎉!", cut
        assert outcome.events[-2:] == [Usage(31, 5, exact=True), Finish("stop")], cut


def test_a_stream_sent_one_byte_at_a_time_gives_the_same_text(harness: Harness) -> None:
    data = sse_stream(events_for(TRICKY), crlf=True)
    harness.server.script(Reply.raw_stream(data, range(1, len(data))))
    outcome = harness.run()
    assert outcome.text == "naïve 日本 🎉!"
    assert all("\ufffd" not in event.text for event in outcome.events if isinstance(event, Token))


def test_the_reader_never_splits_a_character_across_tokens() -> None:
    data = sse_stream(events_for(TRICKY))
    for first in range(1, len(data)):
        for second in range(first + 1, len(data), 7):
            reader = SSEReader()
            datas = reader.feed(data[:first]) + reader.feed(data[first:second]) + reader.feed(data[second:])
            datas += reader.close()
            assert datas[-1] == "[DONE]"
            assert "\ufffd" not in "".join(datas)


# -- every variant the protocol notes list ----------------------------------------------------


def test_tokens_arrive_as_separate_events_with_usage_and_one_finish(harness: Harness) -> None:
    harness.server.script(Reply.sse(events_for(["New", " York", " is", " in", " the USA."]), pause=0.01))
    outcome = harness.run()
    assert outcome.error is None
    assert [e.text for e in outcome.events if isinstance(e, Token)] == [
        "New",
        " York",
        " is",
        " in",
        " the USA.",
    ]
    assert outcome.events[-2:] == [Usage(31, 5, exact=True), Finish("stop")]
    assert sum(isinstance(e, Finish) for e in outcome.events) == 1


def test_padding_fields_empty_tokens_comments_and_no_space_after_data_are_tolerated(harness: Harness) -> None:
    body = (
        b": keep-alive\n\n"
        b'data:{"response":"New","p":"abcdefgh"}\n\n'
        b": another comment\n"
        b'data: {"response":"","p":"xyz"}\n\n'
        b'data:{"response":" York","p":"q","extra":{"nested":[1,2]}}\r\n\r\n'
        b'event: message\nid: 7\nretry: 100\ndata: {"response":"!"}\n\n'
        b'data: {"response":"","usage":{"prompt_tokens":755,"completion_tokens":3,"total_tokens":758}}\n\n'
        b"data: [DONE]\n\n"
    )
    harness.server.script(Reply.raw_stream(body))
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "New York!"
    assert Token("") not in outcome.events
    assert outcome.events[-2:] == [Usage(755, 3, exact=True), Finish("stop")]


def test_done_without_its_final_blank_line_still_completes_the_reply(harness: Harness) -> None:
    harness.server.script(Reply.raw_stream(b'data: {"response":"ok"}\n\ndata: [DONE]'))
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.events == [Token("ok"), Finish("stop")]


def test_a_stream_without_usage_still_finishes(harness: Harness) -> None:
    harness.server.script(Reply.sse(events_for(["a", "b"], usage=None)))
    outcome = harness.run()
    assert outcome.events == [Token("a"), Token("b"), Finish("stop")]


def test_openai_style_chunks_with_finish_reason_and_usage(harness: Harness) -> None:
    chunks: list[dict[str, Any]] = [
        {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"role": "assistant"}}],
        },
        {"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
    ]
    harness.server.script(Reply.sse(chunks))
    outcome = harness.run(make_request(max_tokens=50))
    assert outcome.error is None
    assert outcome.text == "Hello there"
    assert outcome.events[-2:] == [Usage(9, 2, exact=True), Finish("length")]


def test_tool_calls_in_a_stream_are_skipped_without_breaking_it(harness: Harness) -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"NYC"}'}}
    chunks: list[dict[str, Any]] = [
        {"response": "Let me check."},
        {"response": None, "tool_calls": [{"name": "weather", "arguments": {"city": "NYC"}}]},
        {"choices": [{"delta": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]},
    ]
    harness.server.script(Reply.sse(chunks))
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "Let me check."
    assert outcome.events[-1] == Finish("stop")
    assert [e for e in outcome.events if isinstance(e, Notice)] == [Notice(TOOL_CALL_NOTICE)]  # once
    assert any("tool_calls" in line for line in harness.debug)


TOOL_CALL_ONLY = [
    pytest.param(
        Reply.sse([{"response": "", "tool_calls": [{"name": "weather", "arguments": {"city": "NYC"}}]}]),
        id="workers-ai-stream",
    ),
    pytest.param(
        Reply.sse(
            [
                {"choices": [{"delta": {"role": "assistant", "tool_calls": [{"index": 0, "id": "t1"}]}}]},
                {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]},
                {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
            ]
        ),
        id="openai-stream",
    ),
    pytest.param(
        Reply.json({"result": {"response": None, "tool_calls": [{"name": "weather", "arguments": {}}]}}),
        id="workers-ai-whole",
    ),
    pytest.param(
        Reply.json(
            {
                "choices": [
                    {
                        "message": {"content": None, "tool_calls": [{"id": "t1"}]},
                        "finish_reason": "tool_calls",
                    }
                ]
            }
        ),
        id="openai-whole",
    ),
]


@pytest.mark.parametrize("reply", TOOL_CALL_ONLY)
def test_a_reply_that_is_only_a_tool_call_says_so_once(harness: Harness, reply: Reply) -> None:
    harness.server.script(reply)
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == ""
    assert outcome.events == [Notice(TOOL_CALL_NOTICE), Finish("stop")]


def test_a_reply_that_fills_max_tokens_finishes_with_length(harness: Harness) -> None:
    harness.server.script(
        Reply.sse(events_for(["a", "b", "c"], {"prompt_tokens": 4, "completion_tokens": 3}))
    )
    assert harness.run(make_request(max_tokens=3)).events[-1] == Finish("length")
    harness.server.script(
        Reply.sse(events_for(["a", "b", "c"], {"prompt_tokens": 4, "completion_tokens": 3}))
    )
    assert harness.run(make_request(max_tokens=4)).events[-1] == Finish("stop")


def test_usage_over_max_tokens_or_beyond_the_text_is_not_taken_for_the_cap(harness: Harness) -> None:
    pieces = [f" w{i}" for i in range(50)]
    harness.server.script(Reply.sse(events_for(pieces, {"prompt_tokens": 4, "completion_tokens": 50})))
    over = harness.run(make_request(max_tokens=5))
    assert over.events[-1] == Finish("stop")
    assert Notice("Workers AI sent 50 reply tokens, more than the max_tokens of 5 it was sent") in over.events
    harness.server.script(
        Reply.sse(events_for(["a", "b"], {"prompt_tokens": 4, "completion_tokens": 10**12}))
    )
    absurd = harness.run(make_request(max_tokens=5))
    assert absurd.events[-1] == Finish("stop")
    assert not any(isinstance(e, Usage) for e in absurd.events)
    assert (
        Notice(
            "Workers AI reported 1000000000000 reply tokens for 2 characters; its usage is ignored and the "
            "reply's tokens estimated"
        )
        in absurd.events
    )


def test_non_json_data_lines_are_ignored_and_told(harness: Harness) -> None:
    harness.server.script(Reply.sse(["not json", {"response": "fine"}, "[1, 2]"]))
    outcome = harness.run()
    told = Notice(
        "Workers AI sent 1 event wai could not read (not JSON): the reply may be missing what it "
        "held; --debug shows it"
    )
    assert outcome.events == [Token("fine"), told, Finish("stop")]


# -- a stream that ends early never looks complete --------------------------------------------


def test_a_stream_that_ends_cleanly_without_done_is_incomplete_and_keeps_its_text(harness: Harness) -> None:
    harness.server.script(Reply.sse(events_for(["New", " York"], usage=None), done=False))
    outcome = harness.run()
    assert outcome.text == "New York"
    assert isinstance(outcome.error, IncompleteReply)
    assert outcome.error.exit_code == EXIT_FAILURE
    assert "incomplete" in str(outcome.error)
    assert not any(isinstance(e, Finish) for e in outcome.events)
    assert len(harness.server.requests) == 1  # output had begun: no retry


@pytest.mark.parametrize("end", ["drop", "reset"])
def test_a_connection_broken_mid_stream_keeps_the_tokens_and_is_not_retried(
    harness: Harness, end: str
) -> None:
    reply = Reply.sse(events_for(["one", " two", " thr"], usage=None), done=False, pause=0.02)
    reply.end = end  # type: ignore[assignment]
    harness.server.script(reply)
    outcome = harness.run()
    assert outcome.text == "one two thr"
    assert isinstance(outcome.error, IncompleteReply)
    assert "connection broke" in str(outcome.error) or "ended before" in str(outcome.error)
    assert not any(isinstance(e, Finish) for e in outcome.events)
    assert len(harness.server.requests) == 1


def test_a_connection_dropped_inside_a_character_keeps_the_whole_characters(harness: Harness) -> None:
    data = sse_stream(events_for(["日本"], usage=None), done=False) + 'data: {"response":"語"}'.encode()
    cut = len(data) - 3  # inside 語
    harness.server.script(
        Reply(headers={"Content-Type": "text/event-stream"}, parts=[data[:cut]], end="drop")
    )
    outcome = harness.run()
    assert outcome.text == "日本"
    assert isinstance(outcome.error, IncompleteReply)


def test_a_connection_dropped_before_any_token_is_retried(harness: Harness) -> None:
    harness.server.script(
        Reply(headers={"Content-Type": "text/event-stream"}, parts=[b": warming up\n\n"], end="drop"),
        Reply.sse(events_for(["fine"])),
    )
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "fine"
    assert len(harness.server.requests) == 2


def test_an_error_event_inside_the_stream_after_tokens_is_incomplete(harness: Harness) -> None:
    harness.server.script(
        Reply.sse([{"response": "Part"}, {"errors": [{"code": 3040, "message": "Capacity"}]}])
    )
    outcome = harness.run()
    assert outcome.text == "Part"
    assert isinstance(outcome.error, IncompleteReply)
    assert "3040" in str(outcome.error)


def test_a_window_error_event_before_any_token_is_a_window_error(harness: Harness) -> None:
    harness.server.script(Reply.sse([{"errors": [{"code": 5021, "message": "too long"}]}], done=False))
    outcome = harness.run()
    assert isinstance(outcome.error, WindowError)
    assert outcome.events == []


# -- timeouts --------------------------------------------------------------------------------


def test_a_stream_that_stalls_after_tokens_is_incomplete_within_the_read_timeout(harness: Harness) -> None:
    reply = Reply.sse(events_for(["Slow", " start"], usage=None), done=False, end="hang")
    harness.server.script(reply)
    started = time.monotonic()
    outcome = harness.run(make_request(read_timeout=0.3))
    elapsed = time.monotonic() - started
    assert outcome.text == "Slow start"
    assert isinstance(outcome.error, IncompleteReply)
    assert "stalled for 0.3 s" in str(outcome.error)
    assert elapsed > 0.25  # it waited out the read timeout (and the server saw it hang up, below)
    assert harness.server.wait_outcomes(1) == ["client_gone"]
    assert len(harness.server.requests) == 1


def test_a_stream_that_sends_only_keep_alives_counts_as_stalled(harness: Harness) -> None:
    # Keep-alives for 20 s, never a token after the first: wai must hang up long before the end.
    parts: list[Part] = [b'data: {"response":"Hi"}\n\n']
    for _ in range(400):
        parts += [Pause(0.05), b": keep-alive\n\n"]
    harness.server.script(Reply(headers={"Content-Type": "text/event-stream"}, parts=parts))
    outcome = harness.run(make_request(read_timeout=0.3))
    assert outcome.text == "Hi"
    assert isinstance(outcome.error, IncompleteReply)
    assert "stalled" in str(outcome.error)
    assert harness.server.wait_outcomes(1) == ["client_gone"]  # hung up while keep-alives still came


def test_a_stall_before_any_token_is_reported_without_retrying(harness: Harness) -> None:
    harness.server.script(Reply(headers={"Content-Type": "text/event-stream"}, end="hang"))
    outcome = harness.run(make_request(read_timeout=0.2))
    assert type(outcome.error) is BackendError
    assert "stalled for 0.2 s" in str(outcome.error)
    assert len(harness.server.requests) == 1


def test_a_server_slow_to_answer_at_all_is_retried(harness: Harness) -> None:
    def late(request: RecordedRequest) -> Reply:
        time.sleep(0.6)
        return Reply.sse(events_for(["late"]))

    harness.server.script(late, Reply.sse(events_for(["on time"])))
    outcome = harness.run(make_request(read_timeout=0.2))
    assert outcome.error is None
    assert outcome.text == "on time"
    assert len(harness.server.requests) == 2
    assert any("did not answer within 0.2 s" in line for line in harness.debug)


# -- closing and interrupting ------------------------------------------------------------------


def test_closing_the_stream_closes_the_connection_promptly(harness: Harness) -> None:
    # 20 s of reply: the server sees the client go long before its end, or the close did not work.
    harness.server.script(Reply.sse(events_for([f" w{i}" for i in range(400)]), pause=0.05))
    events = harness.backend.stream(make_request())
    assert next(events) == Token(" w0")
    assert next(events) == Token(" w1")
    events.close()  # type: ignore[attr-defined]
    assert harness.server.wait_outcomes(1, timeout=10) == ["client_gone"]


def test_ctrl_c_inside_the_stream_closes_the_connection(harness: Harness) -> None:
    harness.server.script(Reply.sse(events_for([f" w{i}" for i in range(200)]), pause=0.02))
    events = harness.backend.stream(make_request())
    assert next(events) == Token(" w0")
    with pytest.raises(KeyboardInterrupt):
        events.throw(KeyboardInterrupt())  # type: ignore[attr-defined]
    assert harness.server.wait_outcomes(1, timeout=3) == ["client_gone"]


# -- the request -------------------------------------------------------------------------------


def test_the_request_goes_to_the_run_route_with_bearer_token_and_max_tokens(harness: Harness) -> None:
    outcome = harness.run(make_request("hello there", max_tokens=1800))
    assert outcome.error is None
    [sent] = harness.server.requests
    assert sent.method == "POST"
    assert sent.path == f"/client/v4/accounts/{ACCOUNT_ID}/ai/run/@cf/meta/llama-2-7b-chat-int8"
    assert sent.headers["authorization"] == f"Bearer {API_TOKEN}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": True,
        "max_tokens": 1800,
    }


def test_sampling_options_are_sent_only_when_set(harness: Harness) -> None:
    harness.run(make_request(sampling=Sampling(temperature=0.0, top_k=5)))
    harness.run(make_request(sampling=Sampling(top_p=0.9, seed=42), max_tokens=7, stream=False))
    first, second = (request.json for request in harness.server.requests)
    assert first["temperature"] == 0.0 and first["top_k"] == 5
    assert "top_p" not in first and "seed" not in first
    assert second == {
        "messages": [{"role": "user", "content": "where is new york?"}],
        "stream": False,
        "max_tokens": 7,
        "top_p": 0.9,
        "seed": 42,
    }


def test_penalties_are_sent_under_workers_ai_names_only_when_set(harness: Harness) -> None:
    penalties = Sampling(frequency_penalty=-1.5, presence_penalty=0.5, repetition_penalty=1.2)
    harness.run(make_request(sampling=penalties))
    harness.run(make_request(sampling=Sampling(presence_penalty=0.0)))
    first, second = (request.json for request in harness.server.requests)
    assert (first["frequency_penalty"], first["presence_penalty"], first["repetition_penalty"]) == (
        -1.5,
        0.5,
        1.2,
    )
    assert second["presence_penalty"] == 0.0
    assert "frequency_penalty" not in second and "repetition_penalty" not in second


def test_a_raw_request_sends_its_prompt_verbatim_instead_of_messages(harness: Harness) -> None:
    text = "<s>[INST] spell it yourself [/INST]"
    request = dataclasses.replace(make_request(text), raw=True)
    outcome = harness.run(request)
    assert outcome.error is None
    assert harness.server.requests[0].json == {"prompt": text, "raw": True, "stream": True, "max_tokens": 100}


def test_max_tokens_is_always_sent_so_replies_are_not_cut_at_256(harness: Harness) -> None:
    harness.server.simulation = Simulation(reply_tokens=400)
    outcome = harness.run(make_request(max_tokens=300))
    assert outcome.error is None
    assert harness.server.requests[0].json["max_tokens"] == 300
    assert outcome.events[-2:] == [Usage(8, 300, exact=True), Finish("length")]
    assert outcome.text.endswith(" token300")


# -- non-streaming -----------------------------------------------------------------------------


def test_a_non_streamed_reply_gives_one_token_usage_and_finish(harness: Harness) -> None:
    harness.server.script(Reply.result("New York is in the USA. 🗽", USAGE))
    outcome = harness.run(make_request(stream=False))
    assert outcome.events == [Token("New York is in the USA. 🗽"), Usage(31, 5, exact=True), Finish("stop")]
    assert harness.server.requests[0].json["stream"] is False


def test_a_non_streamed_reply_without_usage(harness: Harness) -> None:
    harness.server.script(Reply.result("short"))
    assert harness.run(make_request(stream=False)).events == [Token("short"), Finish("stop")]


def test_a_json_answer_to_a_stream_request_is_read_whole(harness: Harness) -> None:
    harness.server.script(Reply.result("whole", {"prompt_tokens": 3, "completion_tokens": 1}))
    outcome = harness.run(make_request(stream=True))
    assert outcome.events == [Token("whole"), Usage(3, 1, exact=True), Finish("stop")]


def test_an_unreadable_success_body_is_an_error_not_an_empty_reply(harness: Harness) -> None:
    harness.server.script(Reply.text(200, "<html><body><p>gateway</p></body></html>"))
    outcome = harness.run(make_request(stream=False))
    assert isinstance(outcome.error, BackendError)
    assert "cannot read: gateway" in str(outcome.error)


# -- errors: one actionable line per documented code ------------------------------------------

ERRORS = [
    # status, code, exception type, words the message must contain
    (401, 10000, ConfigError, ["CLOUDFLARE_API_TOKEN"]),
    (403, 10000, ConfigError, ["CLOUDFLARE_API_TOKEN"]),
    (404, 7003, ConfigError, ["CLOUDFLARE_ACCOUNT_ID", "0123…cdef"]),
    (405, 7001, ConfigError, ["CLOUDFLARE_BASE_URL"]),
    (400, 5007, ConfigError, ["@cf/meta/llama-2-7b-chat-int8", "wai models"]),
    (404, 3042, ConfigError, ["@cf/meta/llama-2-7b-chat-int8", "wai models"]),
    (400, 5004, BackendError, ["--temperature"]),
    (400, 3003, BackendError, ["--debug"]),
    (400, 5021, WindowError, ["context window", "--max-tokens"]),
    (413, 5021, WindowError, ["context window", "--max-tokens"]),
    (403, 5016, BackendError, ["agree", "wai ask -m @cf/meta/llama-2-7b-chat-int8 agree"]),
    (408, 3008, BackendError, ["try again"]),
    (413, 3006, BackendError, ["too large", "shorten"]),
    (429, 3036, AllowanceSpent, ["daily free allocation", "tomorrow", "Paid"]),
    (429, 4006, AllowanceSpent, ["daily free allocation", "tomorrow", "Paid"]),
    (410, 5028, ConfigError, ["retired @cf/meta/llama-2-7b-chat-int8", "@cf/meta/llama-3.1-8b-instruct-fp8"]),
    (403, 5035, ConfigError, ["@cf/meta/llama-2-7b-chat-int8 needs the Workers Paid plan", "wai models"]),
    (403, 5018, ConfigError, ["not allowed to use @cf/meta/llama-2-7b-chat-int8", "0123…cdef"]),
    (403, 3041, ConfigError, ["not allowed to use Workers AI", "permissions"]),
    (403, 3023, ConfigError, ["blocked", "support"]),
]


@pytest.mark.parametrize(
    ("status", "code", "kind", "words"), ERRORS, ids=[f"{s}-{c}" for s, c, _, _ in ERRORS]
)
def test_each_error_code_gets_an_actionable_line_and_no_retry(
    harness: Harness, status: int, code: int, kind: type[Exception], words: list[str]
) -> None:
    harness.server.script(Reply.error(status, code, f"server text for {code}"))
    outcome = harness.run()
    error = outcome.error
    assert type(error) is kind
    message = str(error)
    assert f"HTTP {status}" in message and f"code {code}" in message
    assert f"server text for {code}" in message
    for word in words:
        assert word in message
    assert "\n" not in message
    assert len(harness.server.requests) == 1  # none of these is retried
    assert outcome.events == []


def test_exit_codes_follow_the_design() -> None:
    assert ConfigError("x").exit_code == EXIT_USAGE
    assert WindowError("x").exit_code == EXIT_WINDOW
    assert BackendError("x").exit_code == EXIT_FAILURE


@pytest.mark.parametrize(
    ("status", "code", "words"),
    [
        (429, 3040, ["out of capacity"]),
        (429, 3021, ["rate limit", "wait a minute"]),
        (500, 1000, ["on its side"]),
        (503, None, ["on its side"]),
    ],
)
def test_retryable_errors_are_retried_then_reported(
    harness: Harness, status: int, code: int | None, words: list[str]
) -> None:
    reply = (
        Reply.error(status, code, "busy") if code else Reply.text(status, "<html>Service Unavailable</html>")
    )
    harness.server.script(reply, reply, reply, reply)
    outcome = harness.run()
    assert type(outcome.error) is BackendError
    message = str(outcome.error)
    assert f"HTTP {status}" in message and "gave up after 4 attempts" in message
    for word in words:
        assert word in message
    assert len(harness.server.requests) == 4
    assert len(harness.sleeps) == 3
    assert harness.sleeps[0] < harness.sleeps[2]  # backing off


def test_a_timeout_3007_is_tried_once_more_and_no_more(harness: Harness) -> None:
    timeout = Reply.error(408, 3007, "Request timeout")
    harness.server.script(timeout, Reply.sse(events_for(["second", " try"])))
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "second try"
    harness.server.forget()
    harness.server.script(timeout, timeout, Reply.sse(events_for(["never"])))
    outcome = harness.run()
    assert type(outcome.error) is BackendError
    assert "timed out" in str(outcome.error) and "gave up after 2 attempts" in str(outcome.error)
    assert len(harness.server.requests) == 2
    assert harness.server.pending == 1


@pytest.mark.parametrize(
    ("message", "named"),
    [
        (
            "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
            "(900 in the messages, 4100 in the completion). Please reduce the length.",
            "context window is 4096 tokens",
        ),
        ("max_completion_tokens is too large: 9000.", "the prompt and max_tokens 9000 do not fit"),
        (
            "'max_tokens' or 'max_completion_tokens' is too large: 4000. This model's maximum context "
            "length is 4096 tokens and your request has 200 input tokens (4000 > 4096 - 200).",
            "200-token prompt leaves at most 3896 for the reply (max_tokens 4000): lower --max-tokens to "
            "3896",
        ),
    ],
)
def test_a_vllm_context_length_400_is_a_window_error_naming_its_number(
    harness: Harness, message: str, named: str
) -> None:
    for reply in (Reply.openai_error(400, message), Reply.error(400, 5006, message)):
        harness.server.script(reply)
        outcome = harness.run()
        assert type(outcome.error) is WindowError
        assert outcome.error.exit_code == EXIT_WINDOW
        assert named in str(outcome.error)
        assert "\n" not in str(outcome.error)
    assert len(harness.server.requests) == 2  # never retried


def test_a_window_the_server_names_below_the_catalogs_says_how_to_fix_the_catalog(harness: Harness) -> None:
    harness.server.script(Reply.openai_error(400, "This model's maximum context length is 1024 tokens."))
    outcome = harness.run()
    assert "the catalog says 4096" in str(outcome.error)
    assert "total_context = 1024" in str(outcome.error)


def test_a_retired_model_named_by_the_server_gets_its_day_from_the_message(harness: Harness) -> None:
    harness.server.script(
        Reply.error(
            410, 5028, "AiError: Model has been deprecated: no longer served, deprecated on 2026-05-30"
        )
    )
    outcome = harness.run()
    assert isinstance(outcome.error, ConfigError)
    message = str(outcome.error)
    assert message.startswith(
        "Workers AI retired @cf/meta/llama-2-7b-chat-int8 on 2026-05-30 (HTTP 410, code 5028"
    )
    assert "use @cf/meta/llama-3.1-8b-instruct-fp8 instead" in message


def test_a_429_then_success_retries_and_honours_retry_after(harness: Harness) -> None:
    harness.server.script(
        Reply.error(429, 3021, "Rate limited", headers={"Retry-After": "2"}),
        Reply.sse(events_for(["after", " waiting"])),
    )
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "after waiting"
    assert len(harness.server.requests) == 2
    assert harness.sleeps == [2.0]


def test_a_retry_after_beyond_the_wait_cap_gives_up_at_once(harness: Harness) -> None:
    harness.rebuild(max_total_wait=10.0)
    harness.server.script(Reply.error(429, 3040, "Capacity", headers={"Retry-After": "120"}))
    outcome = harness.run()
    assert type(outcome.error) is BackendError
    assert "asked to wait 120 s" in str(outcome.error)
    assert harness.sleeps == []
    assert len(harness.server.requests) == 1


def test_backoff_grows_with_jitter_and_stays_under_the_cap() -> None:
    backend = WorkersAIStream(
        Credentials(ACCOUNT_ID, API_TOKEN, "http://127.0.0.1:9"), base_delay=1.0, max_delay=8.0
    )
    delays = [[backend._delay(attempt, None) for attempt in range(6)] for _ in range(50)]
    for attempt, ceiling in enumerate([1, 2, 4, 8, 8, 8]):
        column = [row[attempt] for row in delays]
        assert all(ceiling / 2 <= d <= ceiling for d in column)
        assert len(set(column)) > 1  # jitter
    assert backend._delay(0, 5.0) == 5.0


def test_the_daily_allocation_and_other_4xx_are_never_retried(harness: Harness) -> None:
    for status, code in [(429, 3036), (429, 4006), (400, 9999), (422, None)]:
        refusal = Reply.error(status, code, "something else") if code else Reply.text(status, "nope")
        harness.server.script(refusal, Reply.sse(events_for(["never"])))
        outcome = harness.run()
        assert type(outcome.error) is (AllowanceSpent if code in (3036, 4006) else BackendError)
        assert f"HTTP {status}" in str(outcome.error)
        assert harness.server.pending == 1  # the success behind it was never asked for
        harness.server.clear_script()
    assert len(harness.server.requests) == 4
    assert harness.sleeps == []


def test_a_non_json_error_body_is_reported_as_text(harness: Harness) -> None:
    harness.server.script(Reply.text(404, "<html><body>\n  Not   found\n</body></html>"))
    outcome = harness.run()
    assert isinstance(outcome.error, ConfigError)
    assert "HTTP 404: Not found" in str(outcome.error)
    assert "CLOUDFLARE_ACCOUNT_ID" in str(outcome.error)


def test_an_unreachable_server_is_retried_then_named(harness: Harness) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = WorkersAIStream(
        Credentials(ACCOUNT_ID, API_TOKEN, f"http://127.0.0.1:{port}/client/v4"),
        sleep=harness.sleeps.append,
        base_delay=0.01,
        max_retries=2,
    )
    with pytest.raises(BackendError) as caught:
        list(backend.stream(make_request()))
    assert f"cannot reach Workers AI at http://127.0.0.1:{port}/client/v4" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(harness.sleeps) == 2


def test_a_malformed_base_url_is_a_configuration_error() -> None:
    backend = WorkersAIStream(Credentials(ACCOUNT_ID, API_TOKEN, "api.cloudflare.com/client/v4"))
    with pytest.raises(ConfigError, match="CLOUDFLARE_BASE_URL"):
        list(backend.stream(make_request()))


# -- the token never leaks ---------------------------------------------------------------------


def test_the_api_token_appears_in_no_message_repr_or_debug_line(harness: Harness) -> None:
    echo = f"Authentication error: token {API_TOKEN} is not valid; Authorization: Bearer {API_TOKEN}"
    harness.server.script(
        Reply.error(401, 10000, echo),
        Reply.text(502, f"<pre>{API_TOKEN}</pre>"),
        Reply.text(502, f"<pre>{API_TOKEN}</pre>"),
        Reply.text(502, f"<pre>{API_TOKEN}</pre>"),
        Reply.text(502, f"<pre>{API_TOKEN}</pre>"),
        Reply.sse([{"response": "x"}, {"errors": [{"code": 1, "message": API_TOKEN}]}]),
        Reply.sse(["junk " + API_TOKEN, {"response": "y"}], done=False, end="drop"),
    )
    seen: list[str] = []
    for _ in range(4):
        outcome = harness.run()
        assert outcome.error is not None
        error = outcome.error
        seen += [str(error), repr(error), *map(str, error.args), error.message]
    assert "***" in seen[0]
    seen += harness.debug
    seen += [repr(harness.backend), str(harness.backend.describe())]
    assert len(harness.debug) > 5
    for text in seen:
        assert API_TOKEN not in text
    # It was sent where it belongs, and only there.
    assert all(r.headers["authorization"] == f"Bearer {API_TOKEN}" for r in harness.server.requests)


def test_describe_names_the_endpoint_without_secrets(harness: Harness) -> None:
    facts = harness.backend.describe()
    assert facts["base_url"] == harness.server.base_url
    assert facts["account_id"] == "0123…cdef"
    assert API_TOKEN not in str(facts) and ACCOUNT_ID not in str(facts)
    assert backend_named("remote").name == "remote" and backend_named("remote").title == "Workers AI"
    assert harness.backend.precision(make_request()) == MODEL.precision


# -- the loopback server's own simulation, which end-to-end tests rely on -----------------------


def test_the_simulation_checks_credentials_model_and_window() -> None:
    simulation = Simulation(
        reply_tokens=3, api_token=API_TOKEN, account_id=ACCOUNT_ID, windows={MODEL.id: 2048}
    )
    with WorkersAIServer(simulation) as server:
        good = Credentials(ACCOUNT_ID, API_TOKEN, server.base_url)
        backend = WorkersAIStream(good, max_retries=0)
        events = list(backend.stream(make_request(max_tokens=10)))
        assert events[:3] == [Token("token1"), Token(" token2"), Token(" token3")]
        assert events[-1] == Finish("stop")
        with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
            list(WorkersAIStream(Credentials(ACCOUNT_ID, "wrong", server.base_url)).stream(make_request()))
        with pytest.raises(ConfigError, match="CLOUDFLARE_ACCOUNT_ID"):
            list(WorkersAIStream(Credentials("other", API_TOKEN, server.base_url)).stream(make_request()))
        with pytest.raises(WindowError, match="5021"):
            list(backend.stream(make_request(max_tokens=2047)))
        backend.close()
        assert not server.errors


def test_a_redirect_points_at_the_base_url(harness: Harness) -> None:
    harness.server.script(
        Reply(status=301, headers={"Location": "https://elsewhere.example/"}, chunked=False)
    )
    outcome = harness.run()
    assert isinstance(outcome.error, ConfigError)
    assert "HTTP 301" in str(outcome.error) and "CLOUDFLARE_BASE_URL" in str(outcome.error)


def test_a_gzip_compressed_stream_is_read_as_it_arrives(harness: Harness) -> None:
    compressor = zlib.compressobj(wbits=31)
    parts: list[Part] = []
    for event in sse_events(events_for(TRICKY)):
        parts.append(compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH))
    parts.append(compressor.flush())
    headers = {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
    harness.server.script(Reply(headers=headers, parts=parts))
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "naïve 日本 🎉!"


def test_a_corrupt_compressed_stream_is_an_error(harness: Harness) -> None:
    headers = {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
    harness.server.script(Reply(headers=headers, parts=[b"this is not gzip at all"]))
    outcome = harness.run()
    assert type(outcome.error) is BackendError
    assert "could not be decoded" in str(outcome.error)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("", None), ("soon", None), ("-4", 0.0)],
)
def test_retry_after_in_seconds(header: str, seconds: float | None) -> None:
    assert _retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = _retry_after(later)
    assert value is not None and 25 <= value <= 31


# -- characters outside the BMP sent as two JSON escapes --------------------------------------


def _tokens_encode(outcome: Outcome) -> None:
    for event in outcome.events:
        if isinstance(event, Token):
            event.text.encode("utf-8")  # a lone surrogate would raise UnicodeEncodeError here


def test_an_emoji_split_into_two_escapes_across_events_is_joined(harness: Harness) -> None:
    harness.server.script(
        Reply.raw_stream(
            b'data: {"response":" split \\ud83c"}\n\ndata: {"response":"\\udf89 end"}\n\ndata: [DONE]\n\n'
        )
    )
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == " split 🎉 end"
    _tokens_encode(outcome)


@pytest.mark.parametrize(
    ("pieces", "text"),
    [
        (["a\ud83c"], "a\ufffd"),  # the stream ends on half a pair
        (["a\ud83c", "b"], "a\ufffdb"),  # the next piece does not complete it
        (["a\ud83c", "\ud83c\udf89"], "a\ufffd🎉"),
        (["\udf89 lone low"], "\ufffd lone low"),
        (["x\ud83c", "", "\udf89"], "x🎉"),  # an empty event in between changes nothing
    ],
)
def test_unpaired_surrogates_become_replacement_characters(
    harness: Harness, pieces: list[str], text: str
) -> None:
    harness.server.script(Reply.sse(events_for(pieces)))
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == text
    assert outcome.events[-1] == Finish("stop")
    _tokens_encode(outcome)


def test_openai_chunks_split_inside_a_surrogate_pair_are_joined(harness: Harness) -> None:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"delta": {"content": "go \ud83d"}}]},
        {"choices": [{"delta": {"content": "\ude80!"}, "finish_reason": "stop"}]},
    ]
    harness.server.script(Reply.sse(chunks))
    outcome = harness.run()
    assert outcome.text == "go 🚀!"
    _tokens_encode(outcome)


def test_a_non_streamed_reply_with_a_lone_surrogate_is_repaired(harness: Harness) -> None:
    harness.server.script(Reply.result("ok \ud83c"))
    outcome = harness.run(make_request(stream=False))
    assert outcome.events == [Token("ok \ufffd"), Finish("stop")]


# -- the model id in the URL -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "path_end"),
    [
        ("@cf/foo#bar", "/ai/run/@cf/foo%23bar"),
        ("@cf/foo?raw=1", "/ai/run/@cf/foo%3Fraw%3D1"),
        ("@hf/some one/model%20x", "/ai/run/@hf/some%20one/model%2520x"),
        ("@cf/meta/llama-2-7b-chat-int8", "/ai/run/@cf/meta/llama-2-7b-chat-int8"),
    ],
)
def test_the_model_id_is_escaped_into_one_path_keeping_at_and_slash(
    harness: Harness, model_id: str, path_end: str
) -> None:
    request = dataclasses.replace(make_request(), model=dataclasses.replace(MODEL, id=model_id))
    outcome = harness.run(request)
    assert outcome.error is None
    [sent] = harness.server.requests
    assert sent.path == f"/client/v4/accounts/{ACCOUNT_ID}{path_end}"


@pytest.mark.parametrize("model_id", ["@cf/../../../user/tokens", "@cf/./x", "@cf//x", "@cf/x\n"])
def test_a_model_id_that_would_leave_the_run_path_is_refused_unsent(harness: Harness, model_id: str) -> None:
    request = dataclasses.replace(make_request(), model=dataclasses.replace(MODEL, id=model_id))
    outcome = harness.run(request)
    assert isinstance(outcome.error, ConfigError)
    assert harness.server.requests == []


# -- a base URL with credentials in it ---------------------------------------------------------

URL_SECRET = "pw-SECRET-in-the-url-77"


def test_userinfo_in_the_base_url_appears_in_no_message_repr_or_debug_line(harness: Harness) -> None:
    base_url = harness.server.base_url.replace("http://", f"http://proxyuser:{URL_SECRET}@")
    harness.backend.close()
    backend = WorkersAIStream(
        Credentials(ACCOUNT_ID, API_TOKEN, base_url), debug_log=harness.debug.append, max_retries=0
    )
    harness.backend = backend
    harness.server.script(
        Reply.error(405, 7001, "Method not allowed"),
        Reply.text(404, "nothing here"),
        Reply(status=301, headers={"Location": "https://elsewhere.example/"}, chunked=False),
        Reply.error(400, 9999, f"bad basic auth {URL_SECRET}"),
    )
    seen: list[str] = []
    for _ in range(4):
        error = harness.run().error
        assert error is not None
        seen += [str(error), repr(error)]
    assert any(harness.server.base_url.replace("http://", "") in text for text in seen)  # still named
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for broken in (f"http://u:{URL_SECRET}@127.0.0.1:{port}/v4", f"ftp://u:{URL_SECRET}@example.com/v4"):
        other = WorkersAIStream(Credentials(ACCOUNT_ID, API_TOKEN, broken), max_retries=0)
        with pytest.raises(BackendError if broken.startswith("http") else ConfigError) as caught:
            list(other.stream(make_request()))
        seen += [str(caught.value), repr(other), str(other.describe())]
    seen += [*harness.debug, repr(backend), str(backend.describe())]
    assert len(harness.debug) > 4
    for text in seen:
        assert URL_SECRET not in text, text
        assert "proxyuser" not in text and "//u:" not in text, text


# -- an error event inside a 200 stream, before any token --------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [(3040, "out of capacity"), (3021, "rate limit"), (3043, "on its side"), (502, "on its side")],
)
def test_a_retryable_error_event_before_any_token_is_retried(harness: Harness, code: int, words: str) -> None:
    refusal = Reply.sse([{"errors": [{"code": code, "message": "busy"}]}], done=False)
    harness.server.script(refusal, Reply.sse(events_for(["fine"])))
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "fine"
    assert len(harness.server.requests) == 2
    assert any(words in line for line in harness.debug)


def test_a_retryable_error_event_every_time_gives_up_like_an_http_429(harness: Harness) -> None:
    refusal = Reply.sse([{"errors": [{"code": 3040, "message": "Capacity temporarily exceeded"}]}])
    harness.server.script(refusal, refusal, refusal, refusal)
    outcome = harness.run()
    assert type(outcome.error) is BackendError
    assert "out of capacity" in str(outcome.error) and "gave up after 4 attempts" in str(outcome.error)
    assert len(harness.server.requests) == 4


def test_other_error_events_before_any_token_are_not_retried(harness: Harness) -> None:
    harness.server.script(
        Reply.sse([{"errors": [{"code": 5004, "message": "Invalid data"}]}]), Reply.sse(events_for(["no"]))
    )
    outcome = harness.run()
    assert type(outcome.error) is BackendError
    assert "5004" in str(outcome.error)
    assert len(harness.server.requests) == 1


CLOUDFLARE_502_PAGE = (
    """<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<html lang="en-US">
<head>
<title>api.cloudflare.com | 502: Bad gateway</title>
<meta charset="UTF-8" />
<style>body { margin: 0; font-family: -apple-system, sans-serif; } .cf-error { color: red }</style>
<script>window.__CF = {"ray": "8a1b2c3d4e5f"}; if (a < b && c > d) { go(); }</script>
</head>
<body>
<div id="cf-wrapper">
  <h1><span class="cf-error-type">Bad gateway</span>
  <span class="code-label">Error code 502</span></h1>
  <p>The web server reported a bad gateway error &amp; the request could not be completed.</p>
  <p>What can I do? Please try again in a few minutes.</p>
  <p>"""
    + "Lorem ipsum dolor sit amet. " * 40
    + """</p>
</div>
</body>
</html>
"""
)


def test_an_html_error_page_becomes_its_text_in_one_short_line(harness: Harness) -> None:
    harness.rebuild(max_retries=0)
    harness.server.script(Reply.text(502, CLOUDFLARE_502_PAGE))
    outcome = harness.run()
    message = str(outcome.error)
    assert "HTTP 502: Bad gateway Error code 502 The web server reported a bad gateway error & the" in message
    for markup in ("<", ">", "font-family", "window.__CF", "DOCTYPE", "endif", "&amp;"):
        assert markup not in message, markup
    assert "\n" not in message and "  " not in message
    assert len(message) < 220


def test_an_html_page_with_only_a_title_says_the_title(harness: Harness) -> None:
    harness.rebuild(max_retries=0)
    harness.server.script(
        Reply.text(503, "<html><head><title>Service Unavailable</title></head><body></body></html>")
    )
    outcome = harness.run()
    assert "HTTP 503: Service Unavailable" in str(outcome.error)
    assert "<" not in str(outcome.error)


# -- control characters from the server never reach a message ----------------------------------

HOSTILE = (
    "bad\x1b[2J\x1b[31m thing\x1b[0m\x1b]0;title\x07 \x1b]52;c;Y2xpcA==\x1b\\ja\x00m\x08\x7f \x9b1;1H\x85done"
)


def _no_controls(text: str) -> None:
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text), ascii(text)
    text.encode("utf-8")  # no lone surrogate either


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply.error(400, 9999, HOSTILE), id="envelope"),
        pytest.param(Reply.error(400, 9999, HOSTILE + "\ud83c"), id="lone-surrogate"),
        pytest.param(Reply.text(400, HOSTILE, content_type="text/plain"), id="text"),
        pytest.param(Reply.sse([{"errors": [{"code": 5004, "message": HOSTILE}]}]), id="stream-event"),
        pytest.param(Reply.sse([{"response": "x"}, {"error": HOSTILE}]), id="after-a-token"),
    ],
)
def test_control_characters_in_server_messages_are_removed(harness: Harness, reply: Reply) -> None:
    harness.server.script(reply)
    outcome = harness.run()
    assert outcome.error is not None
    message = str(outcome.error)
    _no_controls(message)
    assert "bad thing jam done" in message
    assert "title" not in message and "Y2xpcA" not in message  # an escape's payload goes with it
    for line in harness.debug:
        _no_controls(line)


@pytest.mark.parametrize("option", SAMPLING_OPTIONS, ids=lambda option: option.name)
def test_every_declared_sampling_option_reaches_the_body_under_its_own_name(
    harness: Harness, option: SamplingOption
) -> None:
    span = RANGES[option.name]
    value = option.kind(span.high)  # within Workers AI's range, and not a default of any server
    sampling = dataclasses.replace(Sampling(), **{option.name: value})  # type: ignore[arg-type]
    harness.run(make_request(sampling=sampling))
    body = harness.server.requests[0].json
    assert body[option.name] == value
    assert not {o.name for o in SAMPLING_OPTIONS if o is not option} & set(body)

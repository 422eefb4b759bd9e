"""Today's Workers AI reply shapes through the backend, against the loopback server: a reasoning
model's thinking, native chunks with finish_reason and usage on every event, JSON and number
answers, empty streams."""

from __future__ import annotations

from typing import Any

import pytest

from tests.backends.conftest import Harness, make_request
from tests.support.workers_ai_server import Reply, native_chunks, openai_chunks, usage_dict
from wai.backends.http.chunks import Stop, ToolCall, chunk_events
from wai.backends.workers_ai.stream import EMPTY_REPLY
from wai.errors import EXIT_FAILURE, BackendError, IncompleteReply
from wai.events import Finish, Reasoning, Token, Usage


def thinking_of(events: list[Any]) -> str:
    return "".join(event.text for event in events if isinstance(event, Reasoning))


# -- the chunk reader, on its own ---------------------------------------------------------------


def test_an_openai_delta_gives_thinking_then_text_then_usage_then_the_servers_reason() -> None:
    chunk = {
        "choices": [
            {
                "delta": {"reasoning_content": "hmm", "content": "Hi", "tool_calls": [{"id": "t"}]},
                "finish_reason": "length",
            }
        ],
        "usage": usage_dict(3, 2, reasoning_tokens=1),
    }
    assert list(chunk_events(chunk)) == [
        Reasoning("hmm"),
        Token("Hi"),
        ToolCall(),
        Usage(3, 2, exact=True, reasoning_tokens=1),
        Stop("length"),
    ]


def test_reasoning_is_read_under_either_key_and_once_when_both_are_sent() -> None:
    assert list(chunk_events({"choices": [{"delta": {"reasoning": "a"}}]})) == [Reasoning("a")]
    both = {"choices": [{"delta": {"reasoning_content": "a", "reasoning": "a", "content": None}}]}
    assert list(chunk_events(both)) == [Reasoning("a")]
    whole = {"choices": [{"message": {"reasoning_content": "r", "content": "c"}, "finish_reason": "stop"}]}
    assert list(chunk_events(whole)) == [Reasoning("r"), Token("c"), Stop("stop")]


@pytest.mark.parametrize(
    ("response", "text"),
    [({"city": "New York", "n": [1, 2]}, '{"city":"New York","n":[1,2]}'), (42, "42"), (2.5, "2.5")],
)
def test_a_native_response_that_is_not_text_is_written_as_compact_json(response: object, text: str) -> None:
    assert list(chunk_events({"response": response})) == [Token(text)]


# -- reasoning models ---------------------------------------------------------------------------


def test_thinking_arrives_apart_from_the_answer_and_is_never_in_its_text(harness: Harness) -> None:
    usage = usage_dict(12, 6, reasoning_tokens=3)
    harness.server.script(
        Reply.sse(openai_chunks(["Let me", " think", "."], ["New York", " is in", " the USA."], usage=usage))
    )
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "New York is in the USA."
    assert thinking_of(outcome.events) == "Let me think."
    kinds = [type(event) for event in outcome.events if isinstance(event, Reasoning | Token)]
    assert kinds == [Reasoning] * 3 + [Token] * 3  # thinking first, in its own events
    assert outcome.events[-2:] == [Usage(12, 6, exact=True, reasoning_tokens=3), Finish("stop")]


def test_thinking_under_the_reasoning_key_is_read_too(harness: Harness) -> None:
    harness.server.script(Reply.sse(openai_chunks(["so"], ["yes"], key="reasoning")))
    outcome = harness.run()
    assert (thinking_of(outcome.events), outcome.text) == ("so", "yes")


def test_thinking_cut_by_the_cap_is_a_length_stop_with_no_answer(harness: Harness) -> None:
    thoughts = [f" step{i}" for i in range(8)]
    harness.server.script(
        Reply.sse(openai_chunks(thoughts, [], finish="length", usage=usage_dict(5, 8, reasoning_tokens=8)))
    )
    outcome = harness.run(make_request(max_tokens=8))
    assert outcome.error is None  # thinking is output: not an empty reply
    assert outcome.text == ""
    assert thinking_of(outcome.events) == "".join(thoughts)
    assert outcome.events[-1] == Finish("length")


def test_thinking_without_usage_counts_toward_the_cap(harness: Harness) -> None:
    harness.server.script(Reply.sse(openai_chunks(["a", "b", "c"], ["d"], finish=None)))
    assert harness.run(make_request(max_tokens=4)).events[-1] == Finish("length")


def test_a_stream_broken_during_the_thinking_is_incomplete_not_retried(harness: Harness) -> None:
    harness.server.script(Reply.sse(openai_chunks(["one", " two"], [], finish=None), done=False, end="drop"))
    outcome = harness.run()
    assert isinstance(outcome.error, IncompleteReply)
    assert "characters of thinking" in str(outcome.error)
    assert len(harness.server.requests) == 1


def test_reasoning_effort_is_sent_only_when_set(harness: Harness) -> None:
    harness.run()
    harness.run(make_request(reasoning_effort="high"))
    first, second = (request.json for request in harness.server.requests)
    assert "reasoning_effort" not in first
    assert second["reasoning_effort"] == "high"


def test_a_whole_reply_with_thinking(harness: Harness) -> None:
    message = {"role": "assistant", "reasoning_content": "think", "content": "answer"}
    harness.server.script(
        Reply.json({"result": {"choices": [{"message": message, "finish_reason": "stop"}]}})
    )
    outcome = harness.run(make_request(stream=False))
    assert outcome.events == [Reasoning("think"), Token("answer"), Finish("stop")]


# -- native chunks of newer models -----------------------------------------------------------------


def test_usage_on_every_event_the_last_one_wins(harness: Harness) -> None:
    harness.server.script(Reply.sse(native_chunks(["a", "b", "c"], prompt_tokens=7)))
    outcome = harness.run()
    assert outcome.text == "abc"
    assert [e for e in outcome.events if isinstance(e, Usage)] == [Usage(7, 3, exact=True)]
    assert outcome.events[-1] == Finish("stop")


def test_a_top_level_finish_reason_length_ends_the_reply_as_a_length_stop(harness: Harness) -> None:
    harness.server.script(Reply.sse(native_chunks(["a", "b"], finish="length")))
    outcome = harness.run(make_request(max_tokens=50))
    assert outcome.error is None
    assert outcome.events[-2:] == [Usage(10, 2, exact=True), Finish("length")]


@pytest.mark.parametrize("end", ["finish", "drop"])
def test_a_missing_done_after_a_finish_reason_is_a_whole_reply(harness: Harness, end: str) -> None:
    harness.server.script(Reply.sse(native_chunks(["New", " York"]), done=False, end=end))  # type: ignore[arg-type]
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.text == "New York"
    assert outcome.events[-1] == Finish("stop")
    harness.server.script(Reply.sse(openai_chunks([], ["ok"], usage=usage_dict(1, 1)), done=False))
    assert harness.run().error is None


def test_a_missing_done_without_a_finish_reason_is_still_incomplete(harness: Harness) -> None:
    harness.server.script(Reply.sse([{"response": "New"}, {"response": " York"}], done=False))
    assert isinstance(harness.run().error, IncompleteReply)


@pytest.mark.parametrize(("response", "text"), [({"answer": "New York"}, '{"answer":"New York"}'), (7, "7")])
def test_a_json_or_number_response_is_the_answer(harness: Harness, response: object, text: str) -> None:
    harness.server.script(Reply.result(response, {"prompt_tokens": 3, "completion_tokens": 4}))
    outcome = harness.run(make_request(stream=False))
    assert outcome.events == [Token(text), Usage(3, 4, exact=True), Finish("stop")]


# -- empty replies ------------------------------------------------------------------------------


def test_an_empty_stream_is_asked_once_more_without_streaming(harness: Harness) -> None:
    harness.server.script(
        Reply.sse([{"response": ""}]), Reply.result("New York", {"prompt_tokens": 3, "completion_tokens": 2})
    )
    outcome = harness.run()
    assert outcome.error is None
    assert outcome.events == [Token("New York"), Usage(3, 2, exact=True), Finish("stop")]
    bodies = [request.json for request in harness.server.requests]
    assert [body["stream"] for body in bodies] == [True, False]
    assert bodies[0]["messages"] == bodies[1]["messages"]
    assert bodies[0]["max_tokens"] == bodies[1]["max_tokens"]


def test_an_empty_reply_twice_is_an_error(harness: Harness) -> None:
    harness.server.script(Reply.sse([{"response": ""}]), Reply.result(""))
    outcome = harness.run()
    assert isinstance(outcome.error, BackendError)
    assert outcome.error.exit_code == EXIT_FAILURE
    assert str(outcome.error).startswith(EMPTY_REPLY)
    assert outcome.events == []
    assert len(harness.server.requests) == 2


def test_an_empty_reply_without_streaming_is_not_asked_again(harness: Harness) -> None:
    harness.server.script(Reply.result(""))
    outcome = harness.run(make_request(stream=False))
    assert isinstance(outcome.error, BackendError) and EMPTY_REPLY in str(outcome.error)
    assert len(harness.server.requests) == 1


def test_a_stream_with_only_a_tool_call_is_not_empty(harness: Harness) -> None:
    harness.server.script(Reply.sse([{"response": "", "tool_calls": [{"name": "f", "arguments": {}}]}]))
    outcome = harness.run()
    assert outcome.error is None
    assert len(harness.server.requests) == 1

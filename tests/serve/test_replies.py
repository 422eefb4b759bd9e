"""Each dialect's events, read back by the client's own chunk reader: thinking, text, usage, finish."""

from __future__ import annotations

import json

from wai.backends.http.chunks import Stop, chunk_events
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.events import Reasoning, Token, Usage
from wai.serve.protocol import Ask
from wai.serve.replies import Dialect, OpenAIReply, Outcome, PageReply, WorkersAIReply
from wai.tokens.budget import Plan
from wai.turn_result import TurnInfo, TurnResult

SPEC = ModelSpec(id="@cf/test/thinker", context_window=300, max_output=100, total_context=400, remote=False)


def outcome(text: str = "", thinking: str = "") -> Outcome:
    ask = Ask(model=SPEC, messages=(Message("user", "hi"),), max_tokens=50, stream=True, include_usage=True)
    done = Outcome(ask, Plan(messages=ask.messages, prompt_tokens=7, max_tokens=50, exact=True), "q8_0")
    info = TurnInfo(SPEC.id, "local", "q8_0", SPEC.context_window, SPEC.max_output, 50, prompt_tokens=7)
    done.result = TurnResult(
        info, text=text, reasoning=thinking, finish_reason="length", prompt_tokens=7, completion_tokens=12
    )
    return done


def read_back(dialect: Dialect) -> list[object]:
    reply = outcome()
    raw = dialect.start(reply) + dialect.reasoning("let me see") + dialect.piece("Paris") + dialect.end(reply)
    datas = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    events: list[object] = []
    for data in datas[:-1]:
        events += [e for e in chunk_events(json.loads(data)) if not (isinstance(e, Token) and not e.text)]
    return events


def test_the_workers_ai_stream_reads_back_as_thinking_text_usage_and_finish() -> None:
    for dialect in (WorkersAIReply(), PageReply()):
        assert read_back(dialect) == [
            Reasoning("let me see"),
            Token("Paris"),
            Usage(prompt_tokens=7, completion_tokens=12),
            Stop("length"),
        ]


def test_the_openai_stream_reads_back_the_same_with_a_usage_chunk() -> None:
    assert read_back(OpenAIReply()) == [
        Reasoning("let me see"),
        Token("Paris"),
        Stop("length"),
        Usage(prompt_tokens=7, completion_tokens=12),
    ]


def test_a_whole_openai_reply_keeps_the_thinking_apart() -> None:
    reply = outcome(text="Paris", thinking="let me see")
    message = OpenAIReply().whole(reply)["choices"][0]["message"]  # type: ignore[index]
    assert message == {"role": "assistant", "content": "Paris", "reasoning_content": "let me see"}

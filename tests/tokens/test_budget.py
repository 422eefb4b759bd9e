"""The window policy with exact counts, for every catalog model that has a vocabulary."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.counting import counter_for
from tests.support.vocab_fixture import vocab_cache, vocab_home
from wai.backends.base import BackendName
from wai.catalog.entries import ModelSpec, load_catalog
from wai.conversation import Message
from wai.errors import EXIT_WINDOW, WindowError
from wai.tokens.budget import (
    MIN_USEFUL_REPLY,
    REASONING_MIN_REPLY,
    Plan,
    input_limit,
    plan_request,
    reply_reserve,
    trim_limit,
)
from wai.tokens.counters import EstimatedCounter, TokenCounter
from wai.tokens.vocabularies import FAMILY_VOCABULARIES

__all__ = ["vocab_cache", "vocab_home"]

WORD = "hello"  # one token, and so is " hello", in every vocabulary here
SYSTEM = Message("system", "You are terse.")


def remote_models() -> list[str]:
    return [m.id for m in load_catalog() if m.remote and m.family in FAMILY_VOCABULARIES]


def local_models(vocab_dir: Path) -> list[ModelSpec]:
    """Local models counted with their own GGUF vocabulary (llama.cpp's vocabulary files stand in)."""
    return [
        ModelSpec(id="local-llama-2", context_window=2048, max_output=1800, total_context=4096, remote=False,
                  gguf=str(vocab_dir / "ggml-vocab-llama-spm.gguf")),
        ModelSpec(id="local-qwen2", context_window=3000, max_output=1000, total_context=3000, remote=False,
                  gguf=str(vocab_dir / "ggml-vocab-qwen2.gguf")),
    ]  # fmt: skip


def words(n: int) -> str:
    return " ".join([WORD] * n)


def prompt_of(counter: TokenCounter, tokens: int, system: bool = True) -> tuple[Message, ...]:
    """A conversation whose prompt is exactly `tokens` tokens, checked by the counter."""
    head = (SYSTEM,) if system else ()
    overhead = counter.count_prompt((*head, Message("user", WORD))) - 1
    convo = (*head, Message("user", words(tokens - overhead)))
    assert counter.count_prompt(convo) == tokens
    return convo


def all_models(vocab_dir: Path) -> list[tuple[ModelSpec, BackendName]]:
    catalog = load_catalog()
    remote: list[tuple[ModelSpec, BackendName]] = [(catalog.get(m), "remote") for m in remote_models()]
    return remote + [(model, "local") for model in local_models(vocab_dir)]


def check_refused(error: WindowError, tokens: int, model: ModelSpec) -> None:
    assert error.exit_code == EXIT_WINDOW
    assert f"{tokens} tokens" in error.message and "~" not in error.message
    assert str(model.context_window) in error.message or str(model.total_context) in error.message


def test_every_remote_model_with_a_family_vocabulary_counts_exactly(vocab_home: Path) -> None:
    assert len(remote_models()) >= 10
    for model_id in remote_models():
        assert counter_for(load_catalog().get(model_id), "remote").exact, model_id


def test_prompts_one_under_at_and_over_the_input_window(vocab_home: Path) -> None:
    for model, backend in all_models(vocab_home):
        counter = counter_for(model, backend)
        assert counter.exact, model.id
        limit = input_limit(model)
        for tokens in (limit - 1, limit):
            convo = prompt_of(counter, tokens)
            plan = plan_request(model, convo, counter)
            assert plan.prompt_tokens == tokens and plan.messages == convo
            assert plan.max_tokens == min(model.max_output, model.total_context - tokens)
            assert plan.max_tokens >= MIN_USEFUL_REPLY
            assert plan.notices == []
        over = prompt_of(counter, limit + 1)
        with pytest.raises(WindowError) as caught:
            plan_request(model, over, counter)
        check_refused(caught.value, limit + 1, model)


def test_over_the_window_cut_keeps_head_or_tail_and_room_for_a_reply(vocab_home: Path) -> None:
    for model, backend in all_models(vocab_home):
        counter = counter_for(model, backend)
        limit = input_limit(model)
        target = min(limit, trim_limit(model))
        over = prompt_of(counter, limit + 1)
        text = over[-1].content
        for fit in ("head", "tail"):
            plan = plan_request(model, over, counter, fit=fit)
            assert plan.prompt_tokens == target == counter.count_prompt(plan.messages), (model.id, fit)
            assert plan.cut_tokens == limit + 1 - target
            assert plan.max_tokens == min(model.max_output, model.total_context - target)
            assert plan.messages[0] == SYSTEM
            kept = plan.messages[-1].content
            assert text.startswith(kept) if fit == "head" else text.endswith(kept)
            side = "start" if fit == "head" else "end"
            notice = (
                f"cut {limit + 1 - target} of the prompt's {limit + 1} tokens from its newest message, "
                f"keeping its {side}"
            )
            assert any(n.startswith(notice) for n in plan.notices), plan.notices


def test_a_far_longer_prompt_is_cut_to_the_last_token_that_fits(vocab_home: Path) -> None:
    model = load_catalog().get("@cf/meta/llama-2-7b-chat-int8")
    counter = counter_for(model, "remote")
    text = Path(__file__).with_name("test_counters.py").read_text(encoding="utf-8") * 3
    convo = (SYSTEM, Message("user", text))
    for fit in ("head", "tail"):
        plan = plan_request(model, convo, counter, fit=fit)
        assert plan.prompt_tokens == counter.count_prompt(plan.messages) <= model.context_window
        kept = plan.messages[-1].content
        assert text.startswith(kept) if fit == "head" else text.endswith(kept)
        # Whole tokens only, and not one more would fit: the next cut point is over the window.
        points = list(counter.cut_points(text))
        cut_at = len(kept) if fit == "head" else len(text) - len(kept)
        assert cut_at in points
        index = points.index(cut_at)
        longer = text[: points[index + 1]] if fit == "head" else text[points[index - 1] :]
        assert counter.count_prompt((SYSTEM, Message("user", longer))) > model.context_window
        assert plan.cut_tokens == counter.count_prompt(convo) - plan.prompt_tokens


def test_replies_one_under_at_and_over_the_output_window(vocab_home: Path) -> None:
    for model, backend in all_models(vocab_home):
        counter = counter_for(model, backend)
        convo = prompt_of(counter, 100)
        room = model.total_context - 100
        for asked in (model.max_output - 1, model.max_output):
            plan = plan_request(model, convo, counter, requested_max_tokens=asked)
            assert plan.max_tokens == min(asked, room)
            assert plan.notices == [] or room < asked
        plan = plan_request(model, convo, counter, requested_max_tokens=model.max_output + 1)
        assert plan.max_tokens == min(model.max_output, room)
        assert any("over" in notice and "output window" in notice for notice in plan.notices)


def test_total_context_squeezes_the_reply(vocab_home: Path) -> None:
    """fp16 Llama-2 takes 3072 tokens in and 2500 out, but only 4096 together."""
    model = load_catalog().get("@cf/meta/llama-2-7b-chat-fp16")
    counter = counter_for(model, "remote")
    convo = prompt_of(counter, 3072)
    plan = plan_request(model, convo, counter)
    assert (plan.prompt_tokens, plan.max_tokens) == (3072, 1024)
    asked = plan_request(model, convo, counter, requested_max_tokens=2500)
    assert asked.max_tokens == 1024
    assert any("lowered to 1024" in notice and "3072" in notice for notice in asked.notices)
    small = plan_request(model, convo, counter, requested_max_tokens=500)
    assert small.max_tokens == 500 and small.notices == []


def test_too_little_room_for_a_reply_is_refused(vocab_home: Path) -> None:
    """A shared window (total == context): the prompt must leave a useful reply's worth."""
    model = load_catalog().get("@cf/tinyllama/tinyllama-1.1b-chat-v1.0")
    counter = counter_for(model, "remote")
    assert model.total_context == model.context_window == 2048
    fits = plan_request(model, prompt_of(counter, 2048 - MIN_USEFUL_REPLY), counter)
    assert fits.max_tokens == MIN_USEFUL_REPLY
    with pytest.raises(WindowError) as caught:
        plan_request(model, prompt_of(counter, 2048 - MIN_USEFUL_REPLY + 1), counter)
    assert "leaves room for only 15 reply tokens" in caught.value.message
    assert "2048-token context" in caught.value.message
    # A smaller request needs less room.
    tiny = plan_request(model, prompt_of(counter, 2040), counter, requested_max_tokens=8)
    assert tiny.max_tokens == 8


def conversation(counter: TokenCounter, turns: int, tokens_per_message: int) -> tuple[Message, ...]:
    convo: list[Message] = [SYSTEM]
    for i in range(turns):
        convo.append(Message("user", f"question {i}: " + words(tokens_per_message)))
        convo.append(Message("assistant", f"answer {i}: " + words(tokens_per_message)))
    convo.append(Message("user", "and the newest question?"))
    return tuple(convo)


def test_conversations_drop_their_oldest_turns(vocab_home: Path) -> None:
    for model_id in ("@cf/meta/llama-2-7b-chat-int8", "@cf/meta/llama-3.1-8b-instruct"):
        model = load_catalog().get(model_id)
        counter = counter_for(model, "remote")
        convo = conversation(counter, 40, 150)
        plan = plan_request(model, convo, counter)
        assert plan.messages[0] == SYSTEM and plan.messages[-1] == convo[-1]
        assert plan.messages[1].role == "user"
        assert plan.messages[1:] == convo[len(convo) - len(plan.messages) + 1 :]
        assert plan.dropped_messages == len(convo) - len(plan.messages) > 0
        assert plan.dropped_messages == 2 * plan.dropped_turns
        # Dropping makes room for a real reply, not just the smallest useful one.
        assert plan.prompt_tokens == counter.count_prompt(plan.messages) <= trim_limit(model)
        assert plan.max_tokens >= reply_reserve(model)
        # The fewest dropped: keeping one more turn would not fit.
        one_more = (SYSTEM, *convo[plan.dropped_messages - 1 :])
        assert counter.count_prompt(one_more) > trim_limit(model)
        assert any(f"dropped the {plan.dropped_messages} oldest messages" in n for n in plan.notices)


def test_a_conversation_that_fits_is_sent_whole(vocab_home: Path) -> None:
    model = load_catalog().get("@cf/meta/llama-3.1-8b-instruct")
    counter = counter_for(model, "remote")
    convo = conversation(counter, 3, 20)
    plan = plan_request(model, convo, counter)
    assert plan.messages == convo and plan.dropped_messages == 0 and plan.notices == []


def test_an_oversized_newest_message_drops_everything_else_then_is_cut(vocab_home: Path) -> None:
    model = load_catalog().get("@cf/meta/llama-2-7b-chat-int8")
    counter = counter_for(model, "remote")
    convo = (*conversation(counter, 2, 10)[:-1], Message("user", words(5000)))
    with pytest.raises(WindowError):
        plan_request(model, convo, counter)
    plan = plan_request(model, convo, counter, fit="tail")
    assert plan.messages[0] == SYSTEM and len(plan.messages) == 2
    assert plan.dropped_messages == 4 and plan.prompt_tokens == model.context_window


class CountingCounter:
    """A real counter that also counts how often the whole prompt is tokenized."""

    def __init__(self, inner: TokenCounter) -> None:
        self.inner = inner
        self.exact = inner.exact
        self.source = inner.source
        self.prompt_counts = 0
        self.longest = 0  # the most characters tokenized in one count

    def count_text(self, text: str) -> int:
        self.longest = max(self.longest, len(text))
        return self.inner.count_text(text)

    def count_prompt(self, messages: Sequence[Message]) -> int:
        self.prompt_counts += 1
        self.longest = max(self.longest, sum(len(m.content) for m in messages))
        return self.inner.count_prompt(messages)

    def cut_points(self, text: str) -> Sequence[int]:
        return self.inner.cut_points(text)

    def prompt_text(self, messages: Sequence[Message]) -> str | None:
        return self.inner.prompt_text(messages)


def test_cutting_a_100k_token_prompt_takes_a_handful_of_counts(vocab_home: Path) -> None:
    model = load_catalog().get("@cf/meta/llama-3.1-8b-instruct")
    counter = CountingCounter(counter_for(model, "remote"))
    prose = Path(__file__).with_name("test_counters.py").read_text(encoding="utf-8")
    text = prose * (100_000 // counter.count_text(prose) + 1)
    assert counter.count_text(text) > 100_000
    plan = plan_request(model, (Message("user", text),), counter, fit="head")
    assert trim_limit(model) - 3 <= plan.prompt_tokens <= trim_limit(model)
    assert counter.prompt_counts <= 8


def test_a_prompt_far_over_the_window_is_refused_from_a_count_of_its_start(vocab_home: Path) -> None:
    model = load_catalog().get("@cf/meta/llama-3.1-8b-instruct")
    counter = CountingCounter(counter_for(model, "remote"))
    prose = Path(__file__).with_name("test_counters.py").read_text(encoding="utf-8")
    text = prose * (5_000_000 // len(prose))  # a 5 MB log piped by mistake
    with pytest.raises(WindowError) as refused:
        plan_request(model, (SYSTEM, Message("user", text)), counter)
    assert counter.longest < len(text) // 10  # the whole text was never tokenized
    exact = counter.inner.count_text(text)
    message = refused.value.message
    assert "estimated from its start" in message and "accepts at most 7968 input tokens" in message
    estimate = int(message.split("~")[1].split()[0])
    assert 0.9 * exact < estimate < 1.1 * exact, (estimate, exact)


def test_a_long_prompt_whose_start_fits_is_counted_whole(vocab_home: Path) -> None:
    # Spaces pack many characters into a token: the start proves nothing, so the count is exact.
    model = load_catalog().get("@cf/meta/llama-3.1-8b-instruct")
    counter = CountingCounter(counter_for(model, "remote"))
    text = " " * 300_000 + words(9000)
    with pytest.raises(WindowError) as refused:
        plan_request(model, (Message("user", text),), counter)
    assert counter.longest >= len(text)
    assert "estimated" not in refused.value.message
    assert f"is {counter.inner.count_prompt((Message('user', text),))} tokens" in refused.value.message


def test_estimated_plans_are_marked_approximate(isolated_home: Path) -> None:
    model = load_catalog().get("@cf/meta/llama-2-7b-chat-int8")
    counter = counter_for(model, "remote")  # no vocabulary installed in this home
    assert isinstance(counter, EstimatedCounter)
    with pytest.raises(WindowError) as caught:
        plan_request(model, (Message("user", "x" * 20_000),), counter)
    assert "~" in caught.value.message
    plan: Plan = plan_request(model, (Message("user", "x" * 20_000),), counter, fit="head")
    assert not plan.exact and plan.prompt_tokens <= model.context_window
    assert any("~" in notice for notice in plan.notices)


def test_no_request_over_a_cap_reaches_the_server(vocab_home: Path) -> None:
    """Plans sent through the real Workers AI backend; every body the server receives is recounted."""
    from tests.support.counting import cap_violations, count_body
    from tests.support.workers_ai_server import WorkersAIServer
    from wai.backends.request import Request
    from wai.backends.workers_ai.stream import WorkersAIStream
    from wai.settings import Credentials

    catalog = load_catalog()
    sent = refused = 0
    with (
        WorkersAIServer() as server,
        WorkersAIStream(Credentials("acct", "token", server.base_url)) as backend,
    ):
        for model_id in remote_models():
            model = catalog.get(model_id)
            counter = counter_for(model, "remote")
            limit = input_limit(model)
            cases: list[tuple[int, int | None]] = [(limit - 1, None), (limit, None), (limit + 1, None)]
            cases += [(100, model.max_output + d) for d in (-1, 0, 1)] + [(limit, model.max_output)]
            for tokens, asked in cases:
                try:
                    plan = plan_request(
                        model, prompt_of(counter, tokens), counter, requested_max_tokens=asked
                    )
                except WindowError:
                    refused += 1
                    continue
                request = Request(model, plan.messages, plan.max_tokens, prompt_tokens=plan.prompt_tokens)
                assert list(backend.stream(request))
                sent += 1
    assert refused == len(remote_models())  # the prompts one token over, and only those
    assert len(server.requests) == sent
    for received in server.requests:
        body = received.json
        assert received.model is not None and isinstance(body, dict)
        model = catalog.get(received.model)
        max_tokens = body.get("max_tokens")
        assert isinstance(max_tokens, int)
        assert cap_violations(model, count_body(model, body), max_tokens) == [], model.id


def test_cap_violations_name_each_broken_window() -> None:
    from tests.support.counting import cap_violations

    fp16 = load_catalog().get("@cf/meta/llama-2-7b-chat-fp16")
    assert cap_violations(fp16, 3072, 1024) == []
    assert cap_violations(fp16, 3073, 10) == ["prompt 3073 > context_window 3072"]
    assert cap_violations(fp16, 3072, 1025) == ["prompt 3072 + max_tokens 1025 > total_context 4096"]
    assert cap_violations(fp16, 100, 2501) == ["max_tokens 2501 > max_output 2500"]
    assert cap_violations(fp16, 100, None) == ["no max_tokens (the server would default to 256)"]


def test_fitting_keeps_the_requested_reply_room(vocab_home: Path) -> None:
    """`--fit tail --max-tokens 1000` on a model whose window is its whole context."""
    model = load_catalog().get("@cf/meta/llama-3.1-8b-instruct")
    counter = counter_for(model, "remote")
    plan = plan_request(model, prompt_of(counter, 9000), counter, fit="tail", requested_max_tokens=1000)
    assert plan.max_tokens == 1000
    assert plan.prompt_tokens == model.total_context - 1000


def test_a_long_newest_message_within_the_window_keeps_it_whole_and_drops_only_what_it_must(
    vocab_home: Path,
) -> None:
    model = load_catalog().get("@cf/meta/llama-3.1-8b-instruct")
    counter = counter_for(model, "remote")
    history = conversation(counter, 2, 50)[:-1]
    newest = prompt_of(counter, 7000)[-1]  # over the reply reserve, inside the input limit
    plan = plan_request(model, (*history, newest), counter)
    assert plan.messages[-1] == newest and plan.cut_tokens == 0
    assert plan.prompt_tokens <= input_limit(model)


def test_a_reasoning_model_is_left_more_room_for_its_reply(vocab_home: Path) -> None:
    """Its thinking counts against max_tokens: a request must leave room for thinking and an answer."""
    model = load_catalog().get("@cf/qwen/qwq-32b")
    counter = counter_for(model, "remote")
    assert model.reasoning and model.total_context == model.context_window == 24000
    fits = plan_request(model, prompt_of(counter, 24000 - REASONING_MIN_REPLY), counter)
    assert fits.max_tokens == REASONING_MIN_REPLY
    with pytest.raises(WindowError) as caught:
        plan_request(model, prompt_of(counter, 24000 - REASONING_MIN_REPLY + 1), counter)
    assert f"at least {REASONING_MIN_REPLY} needed" in caught.value.message
    # An explicit --max-tokens below that floor is the user's choice.
    assert plan_request(model, prompt_of(counter, 23990), counter, requested_max_tokens=8).max_tokens == 8
    # Trimming a conversation keeps half the window for the reply, not a quarter.
    assert reply_reserve(model) == 12000
    assert reply_reserve(dataclasses.replace(model, reasoning=False)) == 6000
    plan = plan_request(model, conversation(counter, 30, 300), counter)
    assert plan.dropped_turns > 0
    assert plan.prompt_tokens <= 12000 and plan.max_tokens == 12000

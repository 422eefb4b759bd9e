"""Batched decoding on real llama.cpp: several requests' sequences in one batch per step, each
getting what it gets alone, and a slot freed by a short reply taken at once by the next request."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.backends.test_llama import request, text_of
from tests.support.tiny_gguf import SPLIT_SCRIPT, TinyModel, build_tiny_llama
from tests.support.vocab_fixture import builtin_vocab
from wai.backends.llama_cpp.batched import BATCHED_FROM, SlotDecoder
from wai.backends.llama_cpp.stream import LlamaCppStream
from wai.backends.request import Request
from wai.errors import WaiError, WindowError
from wai.events import Event, Finish, Usage

pytest.importorskip("llama_cpp")

__all__ = ["builtin_vocab"]


@pytest.fixture(scope="module")
def endless(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Writes "Hi 🎉!" over and over: only the cap stops it."""
    path = tmp_path_factory.mktemp("tiny-batched") / "loop.q8_0.gguf"
    return build_tiny_llama(path, ftype="q8_0", script="Hi 🎉!", loop=True, context_length=512)


def test_each_sequence_gets_what_it_gets_alone(tiny_models: dict[str, TinyModel]) -> None:
    model = tiny_models["f16"]
    backend = LlamaCppStream(threads=1)
    try:
        texts = ("where is new york?", "hi", "a longer question, if any", "why?", "one more")
        asks = [request(model, text) for text in texts]
        alone = [list(backend.stream(ask)) for ask in asks]
        # Five at once: one llama.cpp batch per step (from BATCHED_FROM sequences on).
        assert len(asks) >= BATCHED_FROM
        together = dict(backend.stream_together(list(enumerate(asks)), len(asks)))
    finally:
        backend.close()
    for number, events in enumerate(alone):
        got = together[number]
        assert not isinstance(got, WaiError)
        assert text_of(got) == text_of(events) == SPLIT_SCRIPT
        assert [e for e in got if isinstance(e, Usage | Finish)] == [
            e for e in events if isinstance(e, Usage | Finish)
        ]


def test_sequences_end_as_they_finish_and_free_slots_take_the_next(endless: TinyModel) -> None:
    caps = [24, 3, 12, 1, 2]  # five requests, two slots (decoded one by one: below BATCHED_FROM)
    asks = [request(endless, max_tokens=cap) for cap in caps]
    backend = LlamaCppStream(threads=1)
    try:
        ended = list(backend.stream_together(list(enumerate(asks)), 2))
        alone = [text_of(list(backend.stream(ask))) for ask in asks]
    finally:
        backend.close()
    # Decoded one after another they would end 0, 1, 2, ...; together, 1 (3 tokens) ends beside 0
    # and frees its slot for 2 (12), which ends while 0 (24) goes on; then 3 and 4 take that slot
    # in turn, and 0 ends last.
    assert [number for number, _ in ended] == [1, 2, 3, 4, 0]
    for number, events in ended:
        assert not isinstance(events, WaiError)
        usage = next(e for e in events if isinstance(e, Usage))
        assert usage.completion_tokens == caps[number]
        assert next(e for e in events if isinstance(e, Finish)).reason == "length"
        assert text_of(events) == alone[number]


def test_a_request_over_its_slot_is_its_own_error(endless: TinyModel) -> None:
    asks = [request(endless, max_tokens=4), replace(request(endless, max_tokens=4), max_tokens=600)]
    backend = LlamaCppStream(threads=1)
    try:
        ended: dict[int, list[Event] | WaiError] = dict(backend.stream_together(list(enumerate(asks)), 2))
    finally:
        backend.close()
    assert isinstance(ended[1], WindowError)
    assert not isinstance(ended[0], WaiError) and text_of(ended[0])


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Sampled with a temperature, what it writes hangs on every logit: a slot whose kept states
    were wrong would change its words."""
    from tests.support.tiny_gguf import SPLIT_WHOLE

    path = tmp_path_factory.mktemp("tiny-noisy") / "noisy.f16.gguf"
    return build_tiny_llama(path, ftype="f16", script=SPLIT_SCRIPT, whole=SPLIT_WHOLE, noise=1.0, seed=3)


def test_a_slot_keeps_what_it_held_and_the_next_prompt_reads_only_what_is_new(noisy: TinyModel) -> None:
    from wai.conversation import Message
    from wai.llama import native
    from wai.sampling import Sampling
    from wai.tokens.local_template import tokenize_chat

    sampled = Sampling(temperature=1.0, seed=11)
    first = replace(request(noisy, "tell me a story", max_tokens=12), sampling=sampled)
    backend = LlamaCppStream(threads=1)
    try:
        decoder: SlotDecoder[str] = backend.slot_decoder(first.model, 2, 256, hint="")
        read: list[int] = []
        decode = decoder.context.decode_batch

        def counting(batch: native.NativeBatch) -> None:
            read.append(batch.count)
            decode(batch)

        decoder.context.decode_batch = counting  # type: ignore[method-assign]

        def run(ask: Request) -> str:
            read.clear()
            decoder.admit("key", ask)
            events: list[Event] = []
            while decoder.busy:
                events += decoder.step()[0].events
            return text_of(events)

        answer = run(first)
        prompt_read = read[0]
        # The conversation goes on: the slot holds its first turn, and only the new turn is read.
        follow = replace(
            first,
            messages=(*first.messages, Message("assistant", answer), Message("user", "and then?")),
        )
        again = run(follow)
        whole = len(tokenize_chat(decoder.model, follow.messages))
        assert whole > prompt_read and read[0] <= whole - prompt_read
        decoder.close()
        # A fresh slot reads the whole conversation, and writes the same words.
        fresh: SlotDecoder[str] = backend.slot_decoder(first.model, 2, 256, hint="")
        fresh.admit("key", follow)
        events: list[Event] = []
        while fresh.busy:
            events += fresh.step()[0].events
        fresh.close()
        assert text_of(events) == again
        alone = text_of(list(backend.stream(follow)))
        assert alone == again
    finally:
        backend.close()


@pytest.mark.e2e
def test_a_prompt_read_beside_others_leaves_exactly_the_logits_it_leaves_alone(builtin_vocab: Path) -> None:
    """Each sequence has a KV cache of its own: with one cache for all, flash attention summed a
    sequence's attention differently beside others (up to 0.8 in a logit of the built-in
    SmolLM2; the tiny models are too small to show it), and greedy replies changed with who
    shared the batch."""
    import numpy as np

    from wai.conversation import Message
    from wai.llama import native
    from wai.tokens.local_template import tokenize_chat

    backend = LlamaCppStream(threads=1)
    try:
        decoder: SlotDecoder[str] = backend.slot_decoder(request(builtin_vocab).model, 3, 256, hint="")
        model, context = decoder.model, decoder.context
        prompts = [
            tokenize_chat(model, (Message("user", text),)) for text in ("where is new york?", "hi", "x " * 30)
        ]

        def last_logits(together: list[list[int]]) -> np.ndarray:
            batch = native.NativeBatch(512, 3)
            places = []
            for sequence, prompt in enumerate(together):
                context.forget(sequence)
                for position, token in enumerate(prompt):
                    place = batch.add(token, position, sequence, logits=position == len(prompt) - 1)
                places.append(place)
            context.decode_batch(batch)
            batch.close()
            pointer = native.lib().llama_get_logits_ith(context.ptr, places[0])
            return np.ctypeslib.as_array(pointer, shape=(model.n_vocab(),)).copy()

        alone = last_logits(prompts[:1])
        assert np.array_equal(last_logits(prompts), alone)
        assert np.array_equal(last_logits([prompts[0], prompts[2]]), alone)
        decoder.close()
    finally:
        backend.close()

"""Batched decoding: several requests on one loaded model, their sequences decoded together in one
llama.cpp batch per step (llama.cpp computes N sequences' next tokens in one pass over the weights
much faster than N passes), continuously: a sequence that ends frees its slot for the next request
at once.

Each sequence has its own slot of the KV cache (n_ctx / slots positions, as if it were alone),
its own sampler chain (a request's seed is its own), and its own text decoder. A request's
prompt is decoded alone in its slot, then its tokens join the step that decodes every slot's
next token. What each request produced comes back whole, as the events its own `stream` would
have given, when it ends.
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from wai.backends.llama_cpp.sampler import sampler_for
from wai.backends.request import Request
from wai.errors import BackendError, WaiError, WindowError
from wai.events import Event, Finish, FinishReason, Token, Usage
from wai.llama import native
from wai.schema.grammar import gbnf as schema_grammar
from wai.tokens.counters import raw_prompt_tokens
from wai.tokens.local_template import tokenize_chat

K = TypeVar("K")
_STEP = 256  # slots are sized in steps of this many positions
# Fewer sequences than this are decoded one by one: llama.cpp's CPU matrix path for 2 or 3 rows
# measured slower here than 2 or 3 one-row passes (SmolLM2 Q8_0, one thread: 1 sequence 80-91
# tokens/s; 2 together 33-38, 3 together 41-51; 4 together 71-85, 8 together 150-229).
BATCHED_FROM = 4


@dataclass(slots=True)
class _Slot(Generic[K]):
    """One sequence under way."""

    key: K
    request: Request
    sequence: int
    sampler: native.Sampler
    prompt_tokens: int
    position: int = 0  # where its next token goes
    produced: int = 0
    next_token: int | None = None  # sampled, to be decoded in the next step
    strip_space: bool = False
    events: list[Event] = field(default_factory=list)
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )


def slot_size(requests: Sequence[Request], n_ctx_train: int) -> int:
    """Positions each slot needs: the longest request's prompt and reply, in steps, within the
    model's trained context."""
    needed = max((r.prompt_tokens or 0) + r.max_tokens for r in requests) if requests else 1
    return min(-(-needed // _STEP) * _STEP, n_ctx_train)


def decode_together(
    model: native.NativeModel,
    context: native.NativeContext,
    requests: Sequence[tuple[K, Request]],
    *,
    slots: int,
    per_slot: int,
) -> Iterator[tuple[K, list[Event] | WaiError]]:
    """Each request's events (or why it failed), as each ends; `context` holds `slots` sequences
    of `per_slot` positions each."""
    waiting = deque(requests)
    free = list(range(slots - 1, -1, -1))
    active: list[_Slot[K]] = []
    batch = native.NativeBatch(max(context.n_batch, slots), slots)
    try:
        while waiting or active:
            while free and waiting:
                key, request = waiting.popleft()
                try:
                    slot = _admit(model, context, batch, key, request, free[-1], per_slot)
                except WaiError as error:
                    yield key, error
                    continue
                free.pop()
                if _take(model, slot, slot.sampler.sample(context, batch.count - 1)):
                    active.append(slot)
                else:
                    yield _ended(context, slot, free)
            if not active:
                continue
            still: list[_Slot[K]] = []
            # Each step: every slot's next token in one batch; below BATCHED_FROM sequences, one
            # decode each, which is faster there (see BATCHED_FROM).
            groups = [active] if len(active) >= BATCHED_FROM else [[slot] for slot in active]
            for group in groups:
                batch.clear()
                places = [batch.add(_next(s), s.position, s.sequence, logits=True) for s in group]
                context.decode_batch(batch)
                for slot, place in zip(group, places, strict=True):
                    slot.position += 1
                    if _take(model, slot, slot.sampler.sample(context, place)):
                        still.append(slot)
                    else:
                        yield _ended(context, slot, free)
            active = still
    finally:
        for slot in active:
            slot.sampler.close()
        batch.close()


def _admit(
    model: native.NativeModel,
    context: native.NativeContext,
    batch: native.NativeBatch,
    key: K,
    request: Request,
    sequence: int,
    per_slot: int,
) -> _Slot[K]:
    """Decode a request's prompt alone in its slot; the logits of its last token are then ready."""
    prompt = (
        raw_prompt_tokens(model, request.messages[-1].content)
        if request.raw
        else tokenize_chat(model, request.messages)
    )
    if not prompt:
        raise BackendError("the chat template made an empty prompt")
    if len(prompt) + request.max_tokens > per_slot:
        raise WindowError(
            f"the prompt ({len(prompt)} tokens) and the reply (up to {request.max_tokens}) exceed the "
            f"{per_slot} positions of a slot"
        )
    grammar = schema_grammar(request.schema.document) if request.schema is not None else None
    sampler = sampler_for(request.sampling, request.max_tokens, model, grammar)
    context.forget(sequence)
    for start in range(0, len(prompt), batch.size):
        batch.clear()
        chunk = prompt[start : start + batch.size]
        for offset, token in enumerate(chunk):
            last = start + offset == len(prompt) - 1
            batch.add(token, start + offset, sequence, logits=last)
        context.decode_batch(batch)
    return _Slot(
        key,
        request,
        sequence,
        sampler,
        prompt_tokens=len(prompt),
        position=len(prompt),
        strip_space=model.is_spm(),
    )


def _take(model: native.NativeModel, slot: _Slot[K], token: int) -> bool:
    """Take the token a slot sampled; False when its reply has ended."""
    slot.next_token = None
    if model.is_eog(token):
        slot.events += [Usage(slot.prompt_tokens, slot.produced, exact=True), Finish("stop")]
        return False
    slot.produced += 1
    piece = model.piece(token)
    if slot.strip_space and piece:
        slot.strip_space = False
        if piece.startswith(b" "):
            piece = piece[1:]
    text = slot.decoder.decode(piece)
    if text:
        slot.events.append(Token(text))
    if slot.produced >= slot.request.max_tokens:
        reason: FinishReason = "length"
        slot.events += [Usage(slot.prompt_tokens, slot.produced, exact=True), Finish(reason)]
        return False
    slot.next_token = token
    return True


def _next(slot: _Slot[K]) -> int:
    assert slot.next_token is not None  # every slot under way has sampled its next token
    return slot.next_token


def _ended(context: native.NativeContext, slot: _Slot[K], free: list[int]) -> tuple[K, list[Event]]:
    slot.sampler.close()
    context.forget(slot.sequence)
    free.append(slot.sequence)
    return slot.key, slot.events

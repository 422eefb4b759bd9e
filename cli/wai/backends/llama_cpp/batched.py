"""Batched decoding: several requests on one loaded model, their sequences decoded together in one
llama.cpp batch per step (llama.cpp computes N sequences' next tokens in one pass over the weights
much faster than N passes), continuously: a sequence that ends frees its slot for the next request
at once.

Each sequence has its own slot of the KV cache (n_ctx / slots positions, as if it were alone),
its own sampler chain (a request's seed is its own), and its own text decoder. A request's
prompt is read in the next steps, a chunk a step in a batch of the prompts being read, and its
first token is sampled when its last chunk is read; each step then decodes every other slot's
next token in one batch. With a KV buffer per sequence (native.NativeContext), a sequence
decoded beside others gives exactly what it gives alone. A slot keeps what it held after its
request ends: the next request goes to the free slot whose tokens begin as its prompt does, and
only the rest of its prompt is read (a chat client sends the whole conversation again each turn;
records of a batch share their template).

`SlotDecoder` is the engine, step by step: `wai serve --parallel` streams each step's events to
their clients. `decode_together` runs a list of requests through it and gives each one's events
whole when it ends (`wai batch`).
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from wai.backends.llama_cpp.request_input import grammar_of, prompt_tokens
from wai.backends.llama_cpp.sampler import sampler_for, unsupported
from wai.backends.request import Request
from wai.errors import BackendError, UsageError, WaiError, WindowError
from wai.events import Event, Finish, FinishReason, Token, Usage
from wai.llama import native

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
    tokens: list[int]  # those whose states the slot holds: the prompt, then each decoded token
    unread: list[int]  # the prompt's tokens still to read
    produced: int = 0
    next_token: int | None = None  # sampled, to be decoded in the next step
    strip_space: bool = False
    events: list[Event] = field(default_factory=list)
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def drain(self) -> list[Event]:
        """The events since the last drain."""
        events, self.events = self.events, []
        return events


@dataclass(frozen=True, slots=True)
class Stepped(Generic[K]):
    """What one request produced in a step (or at admission): its new events, and whether its
    reply has ended (its last events are a Usage and a Finish)."""

    key: K
    events: list[Event]
    ended: bool


def slot_size(requests: Sequence[Request], n_ctx_train: int) -> int:
    """Positions each slot needs: the longest request's prompt and reply, in steps, within the
    model's trained context."""
    needed = max((r.prompt_tokens or 0) + r.max_tokens for r in requests) if requests else 1
    return min(-(-needed // _STEP) * _STEP, n_ctx_train)


class SlotDecoder(Generic[K]):
    """Up to `slots` requests' sequences in one context of `slots` x `per_slot` positions, decoded
    together one step at a time. It owns `context` from now on, and frees it on close."""

    def __init__(
        self, model: native.NativeModel, context: native.NativeContext, *, slots: int, per_slot: int
    ) -> None:
        self.model = model
        self.context = context
        self.per_slot = per_slot
        self._free = list(range(slots - 1, -1, -1))
        self._held: dict[int, list[int]] = {}  # a free sequence's tokens, still in the cache
        self._active: dict[K, _Slot[K]] = {}
        self._batch = native.NativeBatch(max(context.n_batch, slots), slots)

    @property
    def free(self) -> int:
        """Slots free for another request."""
        return len(self._free)

    @property
    def busy(self) -> bool:
        return bool(self._active)

    def admit(self, key: K, request: Request) -> None:
        """Give the request a free slot: its prompt is read in the next steps, then its replies'
        tokens come. Raises WaiError when it cannot run (over its slot, sampling llama.cpp lacks)."""
        if not self._free:
            raise BackendError("no slot is free")  # the caller admits only into free slots
        prompt = _prompt_of(self.model, request, self.per_slot)
        sequence, kept = self._closest(prompt)
        if not self.context.forget_from(sequence, kept):
            self.context.forget(sequence)
            kept = 0
        sampler = sampler_for(
            request.sampling, request.max_tokens, model=self.model, grammar=grammar_of(request)
        )
        self._free.remove(sequence)
        self._held.pop(sequence, None)
        self._active[key] = _Slot(
            key,
            request,
            sequence,
            sampler,
            prompt_tokens=len(prompt),
            tokens=prompt[:kept],
            unread=prompt[kept:],
            strip_space=self.model.is_spm(),
        )

    def reading(self, key: K) -> bool:
        """Whether the request's prompt is still being read."""
        slot = self._active.get(key)
        return slot is not None and bool(slot.unread)

    def step(self, skip: Collection[K] = ()) -> list[Stepped[K]]:
        """One step: the next chunk of each prompt being read, in a batch of prompts (a prompt's
        first token is sampled when its last chunk is read), then every other active sequence's
        last token in one batch (but those of `skip`, which wait), and each one's next token
        sampled. What each produced. Prompts and single tokens never share a batch: llama.cpp
        splits a batch into equal shares of each sequence's tokens, one token each beside them."""
        # In the order of their sequences: llama.cpp takes a batch of sequences 0, 1, 2, ... in
        # one pass, and splits one of them out of order into several.
        active = sorted(
            (slot for key, slot in self._active.items() if key not in skip), key=lambda slot: slot.sequence
        )
        stepped: list[Stepped[K]] = []
        reading = [slot for slot in active if slot.unread]
        if reading:
            stepped += self._decode(reading)
        decoding = [slot for slot in active if not slot.unread and slot.key in self._active]
        if len(decoding) >= BATCHED_FROM:
            stepped += self._decode(decoding)
        else:  # a few sequences, one decode each: faster there (see BATCHED_FROM)
            for slot in decoding:
                stepped += self._decode([slot])
        return stepped

    def _decode(self, group: list[_Slot[K]]) -> list[Stepped[K]]:
        """One batch: the next chunk of each prompt in the group, or the last token of each."""
        batch = self._batch
        batch.clear()
        places: dict[int, int] = {}  # sequence: where its logits are
        read: dict[int, int] = {}  # sequence: prompt tokens read in this batch
        for slot in group:
            if not slot.unread:
                places[slot.sequence] = batch.add(_next(slot), len(slot.tokens), slot.sequence, logits=True)
                continue
            room = batch.size - batch.count
            if room <= 0:
                continue  # the batch is full: its prompt waits for the next step
            chunk = slot.unread[:room]
            start = len(slot.tokens)
            for offset, token in enumerate(chunk):
                last = offset == len(slot.unread) - 1
                place = batch.add(token, start + offset, slot.sequence, logits=last)
                if last:
                    places[slot.sequence] = place
            read[slot.sequence] = len(chunk)
        self.context.decode_batch(batch)
        stepped: list[Stepped[K]] = []
        for slot in group:
            if slot.sequence in read:
                count = read[slot.sequence]
                slot.tokens += slot.unread[:count]
                del slot.unread[:count]
            elif not slot.unread:
                slot.tokens.append(_next(slot))
            if slot.sequence not in places:
                continue  # its prompt is not read whole yet
            going = _take(self.model, slot, slot.sampler.sample(self.context, places[slot.sequence]))
            if not going:
                del self._active[slot.key]
                self._end(slot)
            stepped.append(Stepped(slot.key, slot.drain(), ended=not going))
        return stepped

    def drop(self, key: K) -> None:
        """Stop a request under way (its client left): its slot is free for the next one."""
        slot = self._active.pop(key, None)
        if slot is not None:
            self._end(slot)

    def close(self) -> None:
        for slot in self._active.values():
            slot.sampler.close()
        self._active.clear()
        self._batch.close()
        self.context.close()

    def _closest(self, prompt: list[int]) -> tuple[int, int]:
        """The free sequence whose held tokens begin as `prompt` does for longest, and how many of
        them it keeps (never the whole prompt: its last token is decoded for its logits)."""
        best, kept = self._free[-1], 0
        for sequence in reversed(self._free):
            common = common_prefix(self._held.get(sequence, ()), prompt)
            if common > kept:
                best, kept = sequence, common
        return best, min(kept, len(prompt) - 1)

    def _end(self, slot: _Slot[K]) -> None:
        slot.sampler.close()
        self._held[slot.sequence] = slot.tokens
        self._free.append(slot.sequence)


def decode_together(
    decoder: SlotDecoder[K], requests: Sequence[tuple[K, Request]]
) -> Iterator[tuple[K, list[Event] | WaiError]]:
    """Each request's events (or why it failed), whole, as each ends."""
    waiting = deque(requests)
    events: dict[K, list[Event]] = {}
    while waiting or decoder.busy:
        while decoder.free and waiting:
            key, request = waiting.popleft()
            try:
                decoder.admit(key, request)
            except WaiError as error:
                yield key, error
                continue
            events[key] = []
        for stepped in decoder.step():
            events[stepped.key] += stepped.events
            if stepped.ended:
                yield stepped.key, events.pop(stepped.key)


def _prompt_of(model: native.NativeModel, request: Request, per_slot: int) -> list[int]:
    refusal = unsupported(request.sampling)
    if refusal is not None:
        raise UsageError(refusal)
    prompt = prompt_tokens(model, request)
    if len(prompt) + request.max_tokens > per_slot:
        raise WindowError(
            f"the prompt ({len(prompt)} tokens) and the reply (up to {request.max_tokens}) exceed the "
            f"{per_slot} positions of a slot"
        )
    return prompt


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens `a` and `b` share from their start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


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

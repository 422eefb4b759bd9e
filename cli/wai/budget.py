"""The window policy, in one place: fit the input, choose max_tokens, never exceed a cap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from wai.catalog import ModelSpec
from wai.conversation import Message
from wai.errors import WindowError
from wai.tokens import TokenCounter

FitMode = Literal["error", "head", "tail"]

# A reply shorter than this is not worth sending a request for.
MIN_USEFUL_REPLY = 16


@dataclass(slots=True)
class Plan:
    """What will be sent: the messages (possibly trimmed), their count, and max_tokens."""

    messages: tuple[Message, ...]
    prompt_tokens: int
    max_tokens: int
    exact: bool
    dropped_turns: int = 0
    cut_tokens: int = 0
    notices: list[str] = field(default_factory=list)


def _approx(exact: bool) -> str:
    return "" if exact else "~"


def plan_request(
    model: ModelSpec,
    messages: tuple[Message, ...],
    counter: TokenCounter,
    *,
    requested_max_tokens: int | None = None,
    fit: FitMode = "error",
    min_reply: int = MIN_USEFUL_REPLY,
) -> Plan:
    """Fit `messages` into `model`'s windows and choose max_tokens, or raise WindowError.

    Conversations lose their oldest turns first (never the system prompt, never the newest
    user message); then the newest user message is cut (`fit` head/tail) or refused.
    """
    notices: list[str] = []
    mark = _approx(counter.exact)
    limit = min(model.context_window, model.total_context - min(min_reply, model.max_output))
    messages, dropped = _drop_oldest_turns(messages, counter, limit)
    if dropped:
        notices.append(
            f"dropped the {dropped} oldest message{'s' if dropped != 1 else ''} "
            f"to fit {model.id}'s {model.context_window}-token window"
        )
    prompt_tokens = counter.count_prompt(messages)
    cut = 0
    if prompt_tokens > limit:
        if fit == "error":
            raise _too_long(model, prompt_tokens, limit, mark)
        messages, prompt_tokens, cut = _cut_newest(messages, counter, limit, fit)
        kept = "start" if fit == "head" else "end"
        notices.append(
            f"cut {mark}{cut} tokens from the prompt, keeping its {kept}, "
            f"to fit {model.id}'s {model.context_window}-token window"
        )
    room = model.total_context - prompt_tokens
    wanted = requested_max_tokens if requested_max_tokens is not None else model.max_output
    if requested_max_tokens is not None and requested_max_tokens > model.max_output:
        notices.append(
            f"--max-tokens {requested_max_tokens} is over {model.id}'s output window; "
            f"lowered to {model.max_output}"
        )
    max_tokens = min(wanted, model.max_output, room)
    if max_tokens < min(min_reply, wanted):
        raise WindowError(
            f"the prompt ({mark}{prompt_tokens} tokens) leaves room for only {max(room, 0)} reply "
            f"tokens in {model.id}'s {model.total_context}-token context",
            hint="shorten the prompt or use --fit head|tail",
        )
    if max_tokens < wanted and room < model.max_output and requested_max_tokens is not None:
        notices.append(
            f"max_tokens lowered to {max_tokens}: the prompt uses {mark}{prompt_tokens} of "
            f"{model.id}'s {model.total_context}-token context"
        )
    return Plan(
        messages=messages,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        exact=counter.exact,
        dropped_turns=dropped,
        cut_tokens=cut,
        notices=notices,
    )


def _too_long(model: ModelSpec, tokens: int, limit: int, mark: str) -> WindowError:
    return WindowError(
        f"the prompt is {mark}{tokens} tokens; {model.id} accepts at most {limit}",
        hint="shorten it, pick a model with a larger window, or use --fit head|tail",
    )


def _drop_oldest_turns(
    messages: tuple[Message, ...], counter: TokenCounter, limit: int
) -> tuple[tuple[Message, ...], int]:
    """Drop the oldest non-system messages until the prompt fits, keeping the newest user message."""
    system = tuple(m for m in messages[:1] if m.role == "system")
    rest = list(messages[len(system) :])
    dropped = 0
    while len(rest) > 1 and counter.count_prompt((*system, *rest)) > limit:
        rest.pop(0)
        dropped += 1
        # A conversation must not start with a reply whose question is gone.
        while len(rest) > 1 and rest[0].role == "assistant":
            rest.pop(0)
            dropped += 1
    return (*system, *rest), dropped


def _cut_newest(
    messages: tuple[Message, ...], counter: TokenCounter, limit: int, fit: FitMode
) -> tuple[tuple[Message, ...], int, int]:
    """Cut the newest message's text (keep its head or tail) to the longest that fits."""
    *before, newest = messages
    text = newest.content
    whole = counter.count_text(text)

    def with_text(part: str) -> tuple[Message, ...]:
        return (*before, Message(newest.role, part))

    def part(n: int) -> str:
        return text[:n] if fit == "head" else text[len(text) - n :]

    low, high = 0, len(text)
    while low < high:  # the longest prefix/suffix (in characters) whose prompt fits
        mid = (low + high + 1) // 2
        if counter.count_prompt(with_text(part(mid))) <= limit:
            low = mid
        else:
            high = mid - 1
    if low == 0:
        raise WindowError(
            f"even without the prompt's text, the conversation needs more than {limit} tokens",
            hint="shorten the system prompt",
        )
    kept = part(low)
    trimmed = with_text(kept)
    return trimmed, counter.count_prompt(trimmed), whole - counter.count_text(kept)

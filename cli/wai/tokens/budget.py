"""The window policy, in one place: fit the input, choose max_tokens, never exceed a cap.

- the prompt (template, BOS and special tokens included) is at most `context_window` tokens;
- `max_tokens` is the smallest of the user's request, `max_output`, and what `total_context`
  leaves after the prompt;
- a prompt that leaves less than a useful reply (MIN_USEFUL_REPLY tokens, or the request when it
  is smaller) is refused like a prompt over the window: WindowError, exit 3, nothing sent;
- a conversation loses its oldest messages first (never the system prompt, never the newest
  user message), whole turns at a time; then the newest message is refused (`fit="error"`) or
  cut to fit, keeping its start (`"head"`) or its end (`"tail"`);
- when wai itself drops turns or cuts text, it makes room for a real reply, not just a useful
  one: the request's max_tokens, else a quarter of the total context (at most `max_output`).
  Only a prompt the user sent whole may use the room down to MIN_USEFUL_REPLY;
- a reasoning model (`reasoning = true` in the catalog) spends part of max_tokens thinking before
  its answer begins, so it is left more: the room kept when wai trims is half the total context,
  and the least room worth sending is REASONING_MIN_REPLY (each at most `max_output`, and never
  more than an explicit --max-tokens asks for).

Every count comes from the model's TokenCounter; with an estimate, figures carry a `~`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.errors import UsageError, WindowError
from wai.wording import counted

if TYPE_CHECKING:
    from wai.tokens.counters import TokenCounter

FitMode = Literal["error", "head", "tail"]

# A reply shorter than this is not worth sending a request for.
MIN_USEFUL_REPLY = 16
# A reasoning model's thinking alone often runs to hundreds of tokens: with less room than this
# its answer would rarely begin.
REASONING_MIN_REPLY = 1024


@dataclass(slots=True)
class Plan:
    """What will be sent: the messages (possibly trimmed), their count, and max_tokens."""

    messages: tuple[Message, ...]
    prompt_tokens: int
    max_tokens: int
    exact: bool
    dropped_turns: int = 0  # user messages dropped, each with its reply
    dropped_messages: int = 0
    cut_tokens: int = 0  # prompt tokens saved by cutting the newest message's text
    notices: list[str] = field(default_factory=list)
    # The windows planned with when the server told smaller ones than the model's (see told_windows).
    windows: ModelSpec | None = None


def _mark(exact: bool) -> str:
    return "" if exact else "~"


def reply_floor(
    model: ModelSpec, requested_max_tokens: int | None = None, min_reply: int = MIN_USEFUL_REPLY
) -> int:
    """The fewest reply tokens a request must leave room for."""
    wanted = requested_max_tokens if requested_max_tokens is not None else model.max_output
    least = max(min_reply, REASONING_MIN_REPLY) if model.reasoning else min_reply
    return max(1, min(least, wanted, model.max_output))


def input_limit(
    model: ModelSpec, requested_max_tokens: int | None = None, min_reply: int = MIN_USEFUL_REPLY
) -> int:
    """The most prompt tokens a request may have: the input window, less room for a useful reply."""
    return min(
        model.context_window, model.total_context - reply_floor(model, requested_max_tokens, min_reply)
    )


def reply_reserve(model: ModelSpec, requested_max_tokens: int | None = None) -> int:
    """The reply room kept when wai trims a conversation or cuts a prompt to fit."""
    share = 2 if model.reasoning else 4
    wanted = requested_max_tokens if requested_max_tokens is not None else model.total_context // share
    return max(1, min(wanted, model.max_output))


def trim_limit(model: ModelSpec, requested_max_tokens: int | None = None) -> int:
    """The most prompt tokens left after wai drops turns or cuts text: room kept for the reply."""
    return min(model.context_window, model.total_context - reply_reserve(model, requested_max_tokens))


def _target(model: ModelSpec, limit: int) -> str:
    if limit == model.context_window:
        return f"{model.id}'s {model.context_window}-token window"
    return (
        f"{limit} tokens ({model.id}'s {model.total_context}-token context less "
        f"{model.total_context - limit} for the reply)"
    )


def plan_request(
    model: ModelSpec,
    messages: tuple[Message, ...],
    counter: TokenCounter,
    *,
    requested_max_tokens: int | None = None,
    fit: FitMode = "error",
    min_reply: int = MIN_USEFUL_REPLY,
    keep_start: int = 0,
) -> Plan:
    """Fit `messages` into `model`'s windows and choose max_tokens, or raise WindowError.

    `keep_start`: characters at the start of the newest message that a cut never touches (the
    question typed before piped text: `cat log | wai ask --fit tail "why?"` keeps "why?").
    """
    if not messages:
        raise UsageError("nothing to send: the conversation is empty")
    if requested_max_tokens is not None and requested_max_tokens < 1:
        raise UsageError(f"--max-tokens must be at least 1, got {requested_max_tokens}")
    floor = reply_floor(model, requested_max_tokens, min_reply)
    limit = input_limit(model, requested_max_tokens, min_reply)
    trimmed = min(limit, trim_limit(model, requested_max_tokens))
    notices: list[str] = []

    if fit == "error":
        estimate = _surely_over(messages[-1], counter, limit)
        if estimate is not None:
            raise window_error(model, estimate, exact=False, floor=floor, estimated_from_start=True)
    prompt_tokens = counter.count_prompt(messages)
    mark = _mark(counter.exact)  # after the first count: a server's counter knows only then
    notices.extend(counter_warnings(counter))
    told = told_windows(model, counter)
    if told is not None:
        # The server's own limit wins over a stale refresh or entry: nothing over it is sent.
        model, warning = told
        notices.extend([warning] if warning else [])
        floor = reply_floor(model, requested_max_tokens, min_reply)
        limit = input_limit(model, requested_max_tokens, min_reply)
        trimmed = min(limit, trim_limit(model, requested_max_tokens))
    dropped_messages = dropped_turns = cut = 0
    if prompt_tokens > trimmed:
        whole_conversation = messages, prompt_tokens
        target = _target(model, trimmed)
        messages, prompt_tokens, dropped_messages, dropped_turns = _drop_oldest(
            messages, counter, trimmed, prompt_tokens
        )
        if prompt_tokens > trimmed and dropped_messages:
            # The newest message alone is over the reserve: drop only what the input limit needs.
            target = _target(model, limit)
            messages, prompt_tokens, dropped_messages, dropped_turns = _drop_oldest(
                *whole_conversation[:1], counter, limit, whole_conversation[1]
            )
        if dropped_messages:
            turns = f" ({dropped_turns} turn{'s' if dropped_turns != 1 else ''})" if dropped_turns else ""
            notices.append(
                f"dropped the {dropped_messages} oldest message{'s' if dropped_messages != 1 else ''}"
                f"{turns} to fit {target}"
            )
    if prompt_tokens > limit:
        if fit == "error":
            raise window_error(model, prompt_tokens, exact=counter.exact, floor=floor)
        whole = prompt_tokens
        target = _target(model, trimmed)
        messages, prompt_tokens = _cut_newest(
            messages, counter, trimmed, fit, prompt_tokens, mark, keep_start
        )
        cut = whole - prompt_tokens
        side = "start" if fit == "head" else "end"
        kept = f"the question and the {side} of the piped text" if keep_start else f"its {side}"
        notices.append(
            f"cut {mark}{cut} of the prompt's {mark}{counted(whole, 'token')} from its newest message, "
            f"keeping {kept}, to fit {target}"
        )

    risk = silent_cut_risk(model, counter, prompt_tokens, limit)
    notices.extend([risk] if risk else [])
    room = model.total_context - prompt_tokens
    wanted = requested_max_tokens if requested_max_tokens is not None else model.max_output
    max_tokens = min(wanted, model.max_output, room)
    if requested_max_tokens is not None and requested_max_tokens > model.max_output:
        why = (
            f"{model.id}'s output window"
            if max_tokens == model.max_output
            else f"what {model.id}'s {model.total_context}-token context leaves after the prompt"
        )
        notices.append(
            f"--max-tokens {requested_max_tokens} is over {model.id}'s output window "
            f"({model.max_output}); lowered to {max_tokens}, {why}"
        )
    elif max_tokens < wanted and requested_max_tokens is not None:
        notices.append(
            f"--max-tokens lowered to {max_tokens}: the prompt uses {mark}{prompt_tokens} of "
            f"{model.id}'s {model.total_context}-token context"
        )
    return Plan(
        messages=messages,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        exact=counter.exact,
        dropped_turns=dropped_turns,
        dropped_messages=dropped_messages,
        cut_tokens=cut,
        notices=notices,
        windows=model if told is not None else None,
    )


def told_windows(model: ModelSpec, counter: TokenCounter) -> tuple[ModelSpec, str | None] | None:
    """`model`'s windows held to what the counter's server told with a count, and a warning, when
    the server's are smaller; None otherwise (and for every counter that asks no server)."""
    told = getattr(counter, "told_windows", None)
    return told(model) if callable(told) else None  # type: ignore[no-any-return]


# The estimate may be this much under a vocabulary's count (windows/estimate.py): a prompt
# estimated this close to the limit may be over it.
ESTIMATE_UNDER = 0.10


def silent_cut_risk(model: ModelSpec, counter: TokenCounter, prompt_tokens: int, limit: int) -> str | None:
    """The warning for a prompt that fits by estimate within ESTIMATE_UNDER of the input limit of
    a server known to cut a longer prompt without an error (the counter's `truncates_silently`
    names it): where a server refuses, a prompt the estimate let by is refused; there the model
    answers part of it. None otherwise."""
    server = getattr(counter, "truncates_silently", None)
    if counter.exact or not server or not limit * (1 - ESTIMATE_UNDER) <= prompt_tokens <= limit:
        return None
    return (
        f"the prompt is ~{counted(prompt_tokens, 'token')} by estimate, within {ESTIMATE_UNDER:.0%} "
        f"of the {limit} {model.id} may take, and {server} cuts a longer prompt without an error: "
        "the model may not see all of it; shorten it by a tenth to be sure"
    )


def counter_warnings(counter: TokenCounter) -> list[str]:
    """What a counter that asks a server found worth a warning (a tokenizer that failed)."""
    drain = getattr(counter, "drain_warnings", None)
    return list(drain()) if callable(drain) else []


# A piped file far over the window is refused from a count of its start: tokenizing 100 MB of log
# to say "too long" would take seconds and gigabytes. The start counted is this many characters
# per token of the limit (no vocabulary's tokens are that long on average), and a cut inside a
# token may count a few more tokens than the whole text has there: hence the slack.
_SAMPLE_CHARS_PER_TOKEN = 16
_CUT_SLACK = 16


def _surely_over(newest: Message, counter: TokenCounter, limit: int) -> int | None:
    """When the start of the newest message alone proves that it cannot fit: the whole message's
    tokens estimated at the rate of its start. Else None, and the prompt is counted whole.

    The newest message is never dropped, so if its start is over the limit, so is every prompt
    that holds it.
    """
    sample = limit * _SAMPLE_CHARS_PER_TOKEN
    text = newest.content
    if len(text) <= 2 * sample:
        return None
    counted = counter.count_prompt((Message(newest.role, text[:sample]),))
    if counted - _CUT_SLACK <= limit:
        return None
    return max(counted, counted * len(text) // sample)


def window_error(
    model: ModelSpec,
    prompt_tokens: int,
    *,
    exact: bool,
    floor: int | None = None,
    estimated_from_start: bool = False,
) -> WindowError:
    """The refusal of a prompt of `prompt_tokens` tokens: over the input window, or no room to reply.

    `estimated_from_start`: `prompt_tokens` is the rate of the prompt's start applied to its whole
    length (the start alone is over the window, so the rest was never counted).
    """
    mark = _mark(exact)
    how = " (estimated from its start, which alone is over the window)" if estimated_from_start else ""
    floor = floor if floor is not None else reply_floor(model)
    hint = "shorten it, pick a model with a larger window, or use --fit head|tail"
    if prompt_tokens > model.context_window:
        return WindowError(
            f"the prompt is {mark}{counted(prompt_tokens, 'token')}{how}; {model.id} accepts at most "
            f"{counted(model.context_window, 'input token')}",
            hint=hint,
        )
    room = max(0, model.total_context - prompt_tokens)
    return WindowError(
        f"the prompt is {mark}{counted(prompt_tokens, 'token')}{how}, which leaves room for only "
        f"{counted(room, 'reply token')} "
        f"in {model.id}'s {model.total_context}-token context (at least {floor} needed, so at most "
        f"{model.total_context - floor} prompt tokens)",
        hint=hint,
    )


def _drop_oldest(
    messages: tuple[Message, ...], counter: TokenCounter, limit: int, whole: int
) -> tuple[tuple[Message, ...], int, int, int]:
    """Drop the fewest oldest messages that make the prompt fit, keeping the system prompt and newest.

    The conversation may only restart at a user message (a reply whose question is gone makes
    no sense), or at the newest message. Fewer messages never count more tokens, so the search
    over restart points is a binary search: a few counts even for a long conversation. When
    even the newest message alone is too long, everything else is dropped and the caller cuts.
    Returns the messages, their count, and how many messages and user turns were dropped.
    """
    system = messages[:1] if messages[0].role == "system" else ()
    rest = messages[len(system) :]
    last = len(rest) - 1
    starts = [s for s in range(1, len(rest)) if rest[s].role == "user" or s == last]
    if not starts:
        return messages, whole, 0, 0
    counted: dict[int, int] = {}

    def count(start: int) -> int:
        if start not in counted:
            counted[start] = counter.count_prompt((*system, *rest[start:]))
        return counted[start]

    low, high = 0, len(starts) - 1  # find the first restart point that fits
    if count(starts[high]) <= limit:
        while low < high:
            mid = (low + high) // 2
            if count(starts[mid]) <= limit:
                high = mid
            else:
                low = mid + 1
    start = starts[high]
    dropped = rest[:start]
    turns = sum(1 for m in dropped if m.role == "user")
    return (*system, *rest[start:]), count(start), len(dropped), turns


def _cut_newest(
    messages: tuple[Message, ...],
    counter: TokenCounter,
    limit: int,
    fit: FitMode,
    whole_prompt: int,
    mark: str,
    keep_start: int = 0,
) -> tuple[tuple[Message, ...], int]:
    """Cut the newest message's text, keeping its head or tail, to the longest that fits.

    The cut falls on the text's own token boundaries (counted once), and each candidate is
    counted exactly as sent; a 100k-token text takes a handful of counts, not one per token.
    Returns the messages and their count.
    """
    *before, newest = messages
    fixed, text = newest.content[:keep_start], newest.content[keep_start:]
    points = counter.cut_points(text)
    n = len(points) - 1

    def kept(i: int) -> str:
        return fixed + (text[: points[i]] if fit == "head" else text[points[n - i] :])

    counts: dict[int, int] = {n: whole_prompt}

    def count(i: int) -> int:
        if i not in counts:
            counts[i] = counter.count_prompt((*before, Message(newest.role, kept(i))))
        return counts[i]

    text_tokens = counter.count_text(text)
    low = _longest_fitting(count, limit, n, n / max(1, text_tokens), whole_prompt - text_tokens)
    if low <= 0:
        without = count(0)
        raise WindowError(
            f"the rest of the conversation is already {mark}{counted(without, 'token')} of the {limit} "
            "this request may use; no part of the newest message fits",
            hint="shorten the system prompt or start a new conversation",
        )
    return (*before, Message(newest.role, kept(low))), count(low)


def _longest_fitting(count: Callable[[int], int], limit: int, n: int, scale: float, overhead: int) -> int:
    """The largest i in [0, n) with count(i) <= limit, -1 when none; count(n) is over the limit.

    Index i keeps about i / scale tokens of the text. A few secant steps from the first guess
    bracket the answer closely (a count off by d tokens moves the guess by d), then a binary
    search settles it; a galloping search gets a fitting bound where the steps found none.
    """
    if n <= 0:
        return -1
    low, high = -1, n
    i = min(n - 1, max(0, round((limit - overhead) * scale)))
    for _ in range(4):
        tokens = count(i)
        if tokens <= limit:
            low = max(low, i)
        else:
            high = min(high, i)
        if high - low <= 1:
            return low
        step = round((limit - tokens) * scale) or (1 if tokens <= limit else -1)
        i = min(high - 1, max(low + 1, i + step))
    step = 1
    while low < 0:  # nothing known to fit yet: gallop down from the smallest known to be over
        i = max(0, high - step)
        if count(i) <= limit:
            low = i
        elif i == 0:
            return -1
        else:
            high, step = i, step * 2
    while high - low > 1:
        mid = (low + high) // 2
        if count(mid) <= limit:
            low = mid
        else:
            high = mid
    return low

"""What one decoded JSON chunk of a reply says, in either shape a server sends.

- Workers AI's own: `{"response": ..., "usage": ..., "finish_reason": ..., "tool_calls": [...]}`,
  where `response` is text, or a JSON value (JSON mode) or a number;
- OpenAI's chat completions: `choices[0].delta` in a stream (`choices[0].message` in a whole
  reply) with `content`, the thinking in `reasoning_content` (or `reasoning`), `tool_calls`,
  and `finish_reason`; `usage` on the chunk itself, often a last chunk with no choices.

Pure functions over decoded JSON, no I/O, so that every backend speaking either shape reads a
chunk the same way. Each yields, in this order: the thinking, the answer's text, a tool call,
the usage, the server's finish reason. Texts are yielded as they came, even empty: the caller
joins split characters and drops what shows nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from wai.events import Reasoning, Token, Usage

# The keys servers use for the thinking: vLLM and DeepSeek's `reasoning_content`, and
# `reasoning` (OpenRouter, Ollama, newer vLLM).
REASONING_KEYS = ("reasoning_content", "reasoning")


@dataclass(frozen=True, slots=True)
class Stop:
    """The server's own finish_reason: "stop", "length", "tool_calls", "content_filter", ..."""

    reason: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The chunk carries a tool call (or a piece of one), which wai does not run."""


ChunkEvent = Reasoning | Token | ToolCall | Usage | Stop


def chunk_events(payload: Mapping[str, Any]) -> Iterator[ChunkEvent]:
    """Either shape: OpenAI's when the chunk has `choices` and no `response`."""
    if isinstance(payload.get("choices"), list) and payload.get("response") is None:
        yield from openai_chunk_events(payload)
    else:
        yield from native_chunk_events(payload)


def openai_chunk_events(payload: Mapping[str, Any]) -> Iterator[ChunkEvent]:
    """A `chat.completion.chunk` (or a whole `chat.completion`): its first choice and its usage."""
    choices = payload.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    holder = _first_dict(choice.get("delta"), choice.get("message"))
    for key in REASONING_KEYS:
        thinking = holder.get(key)
        if isinstance(thinking, str):
            yield Reasoning(thinking)
            break
    content = holder.get("content")
    if isinstance(content, str):
        yield Token(content)
    elif isinstance(choice.get("text"), str):  # the older completions API
        yield Token(choice["text"])
    if holder.get("tool_calls"):
        yield ToolCall()
    usage = usage_of(payload.get("usage"))
    if usage is not None:
        yield usage
    finish = choice.get("finish_reason")
    if isinstance(finish, str) and finish:
        yield Stop(finish)


def native_chunk_events(payload: Mapping[str, Any]) -> Iterator[ChunkEvent]:
    """Workers AI's own event or result: `response`, and since 2025 `finish_reason` and `usage`."""
    response = payload.get("response")
    if isinstance(response, str):
        yield Token(response)
    elif response is not None:
        # JSON mode answers with an object; some models with a bare number. Either is the
        # answer, written as compact JSON (a number as its own text).
        yield Token(json.dumps(response, ensure_ascii=False, separators=(",", ":")))
    if payload.get("tool_calls"):
        yield ToolCall()
    usage = usage_of(payload.get("usage"))
    if usage is not None:
        yield usage
    finish = payload.get("finish_reason")
    if isinstance(finish, str) and finish:
        yield Stop(finish)


def usage_of(raw: object) -> Usage | None:
    """Token figures, or None when absent or malformed. `completion_tokens` counts the thinking
    too (both shapes say so); OpenAI's `completion_tokens_details.reasoning_tokens` tells how much,
    and `prompt_tokens_details.cached_tokens` how much of the prompt came from the cache."""
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens")
    if not (_count(prompt) and _count(completion)):
        return None
    assert isinstance(prompt, int) and isinstance(completion, int)
    details = raw.get("completion_tokens_details")
    thinking = details.get("reasoning_tokens") if isinstance(details, dict) else None
    # Prompt caching: `prompt_tokens_details.cached_tokens` is a part of prompt_tokens.
    prompt_details = raw.get("prompt_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        exact=True,
        reasoning_tokens=thinking if _count(thinking) else None,
        cached_tokens=min(cached, prompt) if _count(cached) and isinstance(cached, int) else None,
    )


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _first_dict(*values: object) -> Mapping[str, Any]:
    for value in values:
        if isinstance(value, dict):
            return value
    return {}

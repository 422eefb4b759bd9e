"""How one reply is written in each of the server's three dialects.

- `WorkersAIReply`: `ai/run`'s `{"response": ...}` events, usage on the last one, `[DONE]`; or the
  whole reply in Cloudflare's envelope.
- `OpenAIReply`: `chat.completion.chunk` events (a usage chunk when asked for), `[DONE]`; or one
  `chat.completion` object.
- `PageReply`: the browser page's event stream: Workers AI's events, plus the figures its footer
  shows on the last one, and every failure as an event (EventSource cannot read an error body).

A stream cut short (client gone, server stopping, model failure) ends without `[DONE]`, after an
event carrying the error, so no client takes a cut reply for a whole one.
"""

from __future__ import annotations

import time
import uuid
from typing import Protocol

from wai.serve.protocol import ApiFailure, Ask, envelope, error_envelope, openai_error, sse, usage_dict
from wai.tokens.budget import Plan
from wai.turn_result import TurnResult

DONE = b"data: [DONE]\n\n"


class Outcome:
    """What a reply says about itself: the ask, the plan it was made within, and once the turn
    ran to its end, the turn's result (its text, thinking, usage and finish reason)."""

    def __init__(self, ask: Ask, plan: Plan, precision: str | None) -> None:
        self.ask = ask
        self.plan = plan
        self.precision = precision
        self.result: TurnResult | None = None

    @property
    def text(self) -> str:
        return self.result.text if self.result is not None else ""

    @property
    def thinking(self) -> str:
        return self.result.reasoning if self.result is not None else ""

    @property
    def prompt_tokens(self) -> int:
        result = self.result
        return (
            result.prompt_tokens
            if result is not None and result.prompt_tokens is not None
            else (self.plan.prompt_tokens)
        )

    @property
    def completion_tokens(self) -> int:
        return (self.result.completion_tokens if self.result is not None else None) or 0

    @property
    def finish(self) -> str:
        """Workers AI's and OpenAI's finish reasons: stop, or length at the output cap."""
        return "length" if self.result is not None and self.result.finish_reason == "length" else "stop"

    def usage(self) -> dict[str, int]:
        return usage_dict(self.prompt_tokens, self.completion_tokens)


class Dialect(Protocol):
    streams_errors: bool  # failures before the first token are events too (the page)

    def error(self, failure: ApiFailure) -> dict[str, object]: ...

    def start(self, outcome: Outcome) -> bytes: ...

    def piece(self, text: str) -> bytes: ...

    def reasoning(self, text: str) -> bytes: ...

    def end(self, outcome: Outcome) -> bytes: ...

    def cut(self, failure: ApiFailure) -> bytes: ...

    def whole(self, outcome: Outcome) -> dict[str, object]: ...


class WorkersAIReply:
    streams_errors = False

    def error(self, failure: ApiFailure) -> dict[str, object]:
        return error_envelope(failure)

    def start(self, outcome: Outcome) -> bytes:
        return b""

    def piece(self, text: str) -> bytes:
        return sse({"response": text})

    def reasoning(self, text: str) -> bytes:
        # Workers AI's reasoning models send their thinking in OpenAI's chunk shape.
        return sse({"choices": [{"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}]})

    def end(self, outcome: Outcome) -> bytes:
        last = {"response": "", "usage": outcome.usage(), "finish_reason": outcome.finish}
        return sse(last) + DONE

    def cut(self, failure: ApiFailure) -> bytes:
        return sse({"errors": [{"code": failure.code, "message": failure.message}]})

    def whole(self, outcome: Outcome) -> dict[str, object]:
        result = outcome.result
        # JSON mode answers with the object itself, as Workers AI does (its text when it was cut).
        # A string or null is answered as its JSON text: as the value itself, a client could not
        # tell "a" (the reply "a") from "a" (a reply's text that is not JSON), nor null from none.
        held = (
            result is not None and result.schema_asked and result.error is None and outcome.finish == "stop"
        )
        value = result.parsed if held and result is not None else None
        response = value if value is not None and not isinstance(value, str) else outcome.text
        return envelope({"response": response, "usage": outcome.usage(), "finish_reason": outcome.finish})


class PageReply(WorkersAIReply):
    streams_errors = True

    def end(self, outcome: Outcome) -> bytes:
        spec = outcome.ask.model
        last = {
            "response": "",
            "usage": outcome.usage(),
            "finish_reason": outcome.finish,
            "max_tokens": outcome.plan.max_tokens,
            "max_output": spec.max_output,
            "context_window": spec.context_window,
            "precision": outcome.precision,
            "notices": outcome.plan.notices,
        }
        return sse(last) + DONE


class OpenAIReply:
    streams_errors = False

    def __init__(self) -> None:
        self._id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self._created = int(time.time())
        self._model = ""
        self._include_usage = False

    def error(self, failure: ApiFailure) -> dict[str, object]:
        return openai_error(failure)

    def _chunk(self, delta: dict[str, str], finish: str | None = None) -> dict[str, object]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def start(self, outcome: Outcome) -> bytes:
        self._model = outcome.ask.model.id
        self._include_usage = outcome.ask.include_usage
        return sse(self._chunk({"role": "assistant", "content": ""}))

    def piece(self, text: str) -> bytes:
        return sse(self._chunk({"content": text}))

    def reasoning(self, text: str) -> bytes:
        return sse(self._chunk({"reasoning_content": text}))

    def end(self, outcome: Outcome) -> bytes:
        out = sse(self._chunk({}, outcome.finish))
        if self._include_usage:
            usage_chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "choices": [],
                "usage": outcome.usage(),
            }
            out += sse(usage_chunk)
        return out + DONE

    def cut(self, failure: ApiFailure) -> bytes:
        return sse(openai_error(failure))

    def whole(self, outcome: Outcome) -> dict[str, object]:
        return {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": outcome.ask.model.id,
            "choices": [
                {
                    "index": 0,
                    "message": _message(outcome),
                    "finish_reason": outcome.finish,
                }
            ],
            "usage": outcome.usage(),
        }


def _message(outcome: Outcome) -> dict[str, str]:
    message = {"role": "assistant", "content": outcome.text}
    if outcome.thinking:
        message["reasoning_content"] = outcome.thinking
    return message

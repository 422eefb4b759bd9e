"""`--json`: one JSON object at the end of the turn, and the dict shape shared with `--jsonl`."""

from __future__ import annotations

import json
from typing import TextIO

from wai.errors import EXIT_INTERRUPTED
from wai.events import Event
from wai.render.failure_json import error_of, interrupted_error
from wai.terminal.safe_text import json_for_terminal
from wai.turn_result import TurnInfo, TurnResult


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def turn_error(result: TurnResult) -> dict[str, object] | None:
    """The turn's `error`: set whenever the command exits with a failure, an interruption included."""
    if result.error is not None:
        return error_of(result.error)
    if result.interrupted:
        from wai.terminal import stop_signals

        return interrupted_error(stop_signals.exit_code(EXIT_INTERRUPTED))
    return None


def cost_dict(result: TurnResult) -> dict[str, object] | None:
    cost = result.cost
    if cost is None:
        return None
    figures = cost.as_dict()
    return {
        "usd": figures["usd"],
        "neurons": figures["neurons"] if result.info.bills_neurons else None,
        "exact": result.usage_exact and result.prompt_exact,
    }


def result_dict(result: TurnResult) -> dict[str, object]:
    completion = result.completion_tokens
    # --schema: the reply's value beside its text (null when it does not satisfy the schema).
    parsed = {"parsed": result.parsed if result.error is None else None} if result.schema_asked else {}
    return {
        "text": result.text,
        **parsed,
        "reasoning": result.reasoning,
        "model": result.info.model,
        "backend": result.info.backend,
        "precision": result.info.precision,
        "finish_reason": result.finish_reason,
        "interrupted": result.interrupted,
        "error": turn_error(result),
        "notices": list(result.notices),
        "warnings": list(result.info.warnings),
        "usage": {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": completion,
            "reasoning_tokens": result.reasoning_tokens,
            "cached_tokens": result.cached_tokens,
            "exact": result.usage_exact,
            "prompt_exact": result.prompt_exact,
        },
        # By the catalog's price (null for a model without one); neurons where the backend bills them.
        "cost": cost_dict(result),
        "windows": {
            "context_window": result.info.context_window,
            "max_output": result.info.max_output,
            "max_tokens": result.info.max_tokens,
        },
        "timings": {
            "first_token_s": _round(result.timings.first_token),
            "total_s": _round(result.timings.total),
            "load_s": _round(result.timings.load),
            "thinking_s": _round(result.timings.thinking),
            "tokens_per_s": _round(result.timings.tokens_per_second(completion or 0)),
        },
    }


class JsonSink:
    tells_output_cap = False
    shows_waiting = False

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self, info: TurnInfo) -> None:
        pass

    def feed(self, event: Event) -> None:
        pass

    def finish(self, result: TurnResult) -> None:
        self.out.write(
            json_for_terminal(json.dumps(result_dict(result), ensure_ascii=False), self.out) + "\n"
        )
        self.out.flush()

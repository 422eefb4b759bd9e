"""The `error` of `--json` and `--jsonl`: one shape for every failure, before sending or after.

A script piping `wai ask --json` into `jq` always gets one document: a turn that failed reports
its `error` with its result, and a command that failed before any turn (a prompt over the
window, an unknown model, a bad option) prints the same document with nothing else known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, TextIO

from wai.errors import EXIT_INTERRUPTED, WaiError
from wai.terminal.safe_text import json_for_terminal

MachineMode = Literal["json", "jsonl"]
INTERRUPTED = "interrupted"  # the code of a command stopped by Ctrl-C, SIGTERM or SIGHUP


def error_object(code: str, message: str, exit_status: int) -> dict[str, object]:
    """`code`: the kind of failure (`usage`, `config`, `window`, `backend`, `incomplete`, ...)."""
    return {"code": code, "message": message, "exit_status": exit_status}


def error_of(error: WaiError) -> dict[str, object]:
    return error_object(error.code, str(error), error.exit_code)


def interrupted_error(exit_status: int = EXIT_INTERRUPTED) -> dict[str, object]:
    return error_object(INTERRUPTED, "interrupted", exit_status)


def no_turn(error: dict[str, object]) -> dict[str, object]:
    """A turn's document for a failure before the turn: every key of a result, nothing known."""
    return {
        "text": "",
        "reasoning": "",
        "model": None,
        "backend": None,
        "precision": None,
        "finish_reason": None,
        "interrupted": error["code"] == INTERRUPTED,
        "error": error,
        "notices": [],
        "warnings": [],
        "usage": {
            "prompt_tokens": None,
            "completion_tokens": None,
            "reasoning_tokens": None,
            "cached_tokens": None,
            "exact": None,
            "prompt_exact": None,
        },
        "cost": None,
        "windows": {"context_window": None, "max_output": None, "max_tokens": None},
        "timings": {
            "first_token_s": None,
            "total_s": None,
            "load_s": None,
            "thinking_s": None,
            "tokens_per_s": None,
        },
    }


def error_event(error: dict[str, object]) -> dict[str, object]:
    """The last event of a `--jsonl` stream that failed."""
    return {"type": "error", **error}


@dataclass(frozen=True, slots=True)
class FailureReport:
    """How a command asked for JSON tells a failure its own output did not report.

    `turn`: the command's document is a turn's result (`wai ask`), so the failure has every key
    of one; other commands (`wai tokens`, `wai logs`, `wai models`) print `{"error": {...}}`.
    """

    mode: MachineMode
    turn: bool = False

    def document(self, error: dict[str, object]) -> dict[str, object]:
        if self.mode == "jsonl":
            return error_event(error)
        return no_turn(error) if self.turn else {"error": error}

    def write(self, out: TextIO, error: dict[str, object]) -> None:
        document = json.dumps(self.document(error), ensure_ascii=False)
        out.write(json_for_terminal(document, out) + "\n")
        out.flush()

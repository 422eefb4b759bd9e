"""One JSON object per event as it happens, for scripts and other programs."""

from __future__ import annotations

import json
from typing import TextIO, assert_never

from wai.events import Event, Finish, Loaded, Notice, PromptRead, Reasoning, Token, Usage
from wai.render.failure_json import error_event
from wai.render.result_json import result_dict, turn_error
from wai.terminal.safe_text import json_for_terminal
from wai.turn_result import TurnInfo, TurnResult


class JsonlSink:
    tells_output_cap = False
    shows_waiting = False

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._thoughts = 0  # events of thinking: its tokens when the server does not count them

    def _emit(self, obj: dict[str, object]) -> None:
        self.out.write(json_for_terminal(json.dumps(obj, ensure_ascii=False), self.out) + "\n")
        self.out.flush()

    def start(self, info: TurnInfo) -> None:
        self._emit(
            {
                "type": "start",
                "model": info.model,
                "backend": info.backend,
                "precision": info.precision,
                "max_tokens": info.max_tokens,
                "prompt_tokens": info.prompt_tokens,
                "context_window": info.context_window,
                "max_output": info.max_output,
                "warnings": list(info.warnings),
            }
        )

    def feed(self, event: Event) -> None:
        match event:
            case Token(text=text):
                if text:
                    self._emit({"type": "token", "text": text})
            case Reasoning(text=text):
                if text:
                    self._thoughts += 1
                    self._emit({"type": "reasoning", "text": text})
            case Usage():
                self._emit(
                    {
                        "type": "usage",
                        "prompt_tokens": event.prompt_tokens,
                        "completion_tokens": event.completion_tokens,
                        # As the summary counts them (TurnResult.reasoning_tokens): one an event.
                        "reasoning_tokens": event.reasoning_tokens
                        if event.reasoning_tokens is not None
                        else (self._thoughts or None),
                        "cached_tokens": event.cached_tokens,
                        "exact": event.exact,
                    }
                )
            case Loaded(seconds=seconds):
                self._emit({"type": "loaded", "seconds": round(seconds, 4)})
            case Notice(text=text):
                self._emit({"type": "notice", "text": text})
            case Finish():
                pass  # reported once, with the timings, by finish()
            case PromptRead():
                pass  # a terminal's progress; the stream's own events say when the reply began
            case _:
                assert_never(event)

    def finish(self, result: TurnResult) -> None:
        summary = result_dict(result)
        summary.pop("text")  # streamed already, piece by piece
        summary.pop("reasoning")
        self._emit({"type": "finish", **summary})
        error = turn_error(result)
        if error is not None:  # a stream that failed ends with its error, as one before a turn does
            self._emit(error_event(error))

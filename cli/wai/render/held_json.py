"""`--schema` on stdout: the reply is held until it is validated, then shown as one JSON value.

Nothing of a reply that fails its schema reaches stdout; one that satisfies it is shown once,
re-serialized from its parsed value: on one line for a pipe, indented and highlighted (a fenced
json block) in the panel.
"""

from __future__ import annotations

import json

from wai.events import Event, Token
from wai.render.base import Sink
from wai.turn_result import TurnInfo, TurnResult


class HeldJsonSink:
    def __init__(self, inner: Sink, *, pretty: bool) -> None:
        self.inner = inner
        self.pretty = pretty
        self.tells_output_cap = inner.tells_output_cap
        self.shows_waiting = inner.shows_waiting

    def start(self, info: TurnInfo) -> None:
        self.inner.start(info)

    def feed(self, event: Event) -> None:
        if not isinstance(event, Token):  # the text waits for the whole reply to be validated
            self.inner.feed(event)

    def finish(self, result: TurnResult) -> None:
        if result.error is None and not result.interrupted:
            self.inner.feed(Token(self.shown(result.parsed)))
        self.inner.finish(result)

    def shown(self, value: object) -> str:
        if self.pretty:
            return "```json\n" + json.dumps(value, ensure_ascii=False, indent=2) + "\n```\n"
        return json.dumps(value, ensure_ascii=False) + "\n"

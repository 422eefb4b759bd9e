"""Plain text for pipes and files: the answer alone, flushed as it arrives, ending with a newline."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from wai.events import Event, Token
from wai.render.terminal_safe import is_terminal, terminal_safe
from wai.turn import TurnInfo, TurnResult


class PlainSink:
    tells_output_cap = False

    def __init__(self, out: TextIO, *, stats: Callable[[TurnResult], None] | None = None) -> None:
        self.out = out
        self.stats = stats
        self._ends_with_newline = True
        # A terminal without the panel (TERM=dumb) gets text; a pipe gets the reply byte for byte.
        self._clean = is_terminal(out)

    def start(self, info: TurnInfo) -> None:
        self._ends_with_newline = True

    def feed(self, event: Event) -> None:
        if isinstance(event, Token) and event.text:
            # Recorded first: a Ctrl-C that lands during the write must still get its newline.
            self._ends_with_newline = event.text.endswith("\n")
            self.out.write(terminal_safe(event.text) if self._clean else event.text)
            self.out.flush()

    def finish(self, result: TurnResult) -> None:
        if not self._ends_with_newline:
            self.out.write("\n")
            self._ends_with_newline = True
        self.out.flush()
        if self.stats is not None:
            self.stats(result)

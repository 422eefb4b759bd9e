"""Plain text for pipes and files: the answer alone, flushed as it arrives, ending with a newline."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO, assert_never

from wai.events import Event, Finish, Loaded, Notice, PromptRead, Reasoning, Token, Usage
from wai.terminal.safe_text import is_terminal, terminal_safe
from wai.turn_result import TurnInfo, TurnResult


class PlainSink:
    tells_output_cap = False
    shows_waiting = False

    def __init__(self, out: TextIO, *, stats: Callable[[TurnResult], None] | None = None) -> None:
        self.out = out
        self.stats = stats
        self._ends_with_newline = True
        # A terminal without the panel (TERM=dumb) gets text; a pipe gets the reply byte for byte.
        self._clean = is_terminal(out)

    def start(self, info: TurnInfo) -> None:
        self._ends_with_newline = True

    def feed(self, event: Event) -> None:
        match event:
            case Token(text=text) if text:
                # Recorded first: a Ctrl-C that lands during the write must still get its newline.
                self._ends_with_newline = text.endswith("\n")
                self.out.write(terminal_safe(text) if self._clean else text)
                self.out.flush()
            case Token() | Reasoning() | Usage() | Finish() | Loaded() | Notice() | PromptRead():
                pass  # plain text is the answer alone
            case _:
                assert_never(event)

    def finish(self, result: TurnResult) -> None:
        if not self._ends_with_newline:
            self.out.write("\n")
            self._ends_with_newline = True
        self.out.flush()
        if self.stats is not None:
            self.stats(result)

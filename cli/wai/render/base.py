"""The contract between the turn driver and every sink."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from wai.events import Event

if TYPE_CHECKING:
    from wai.turn_result import TurnInfo, TurnResult


class Sink(Protocol):
    """Shows one turn. `start` once, `feed` per event, `finish` once (also after errors).

    `tells_output_cap`: the sink itself tells the user when the output cap stopped the reply
    (the panel's footer does), so the command need not repeat it on stderr.
    `shows_waiting`: from `start` on, the sink shows the wait for the reply as it goes (the panel's
    spinner, the seconds, the prompt's reading): slow work that can wait for the turn (loading a
    model's weights) is better done inside it than before it, on a screen that shows nothing.
    """

    tells_output_cap: bool
    shows_waiting: bool

    def start(self, info: TurnInfo) -> None: ...

    def feed(self, event: Event) -> None: ...

    def finish(self, result: TurnResult) -> None: ...

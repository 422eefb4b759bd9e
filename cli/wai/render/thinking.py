"""The model's thinking in the live panel: dimmed under a "thinking" label while it arrives, then
folded to one line once the answer begins, or kept whole (`--show-thinking`).

Folded, the thinking only ever lives in the live area (its newest rows, so the cost of a frame
does not grow with its length) and can be erased when the answer starts. Kept whole, rows that
can no longer change are printed above for good as they form, like the answer's settled blocks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment

LABEL = "thinking"
# Folded, the live area shows at most this many characters of the thinking's end: enough for
# its rows on any screen, and a frame's cost stays flat however long the thinking grows.
_TAIL_CELLS_PER_ROW = 2


def fold_line(tokens: int, seconds: float) -> str:
    return f"thought for {tokens} token{'s' if tokens != 1 else ''}, {seconds:.1f} s"


class ThinkingView:
    """The thinking of one reply and what of it is on screen. Used by PanelSink under its lock."""

    def __init__(self, console: Console, *, keep_whole: bool) -> None:
        self.console = console
        self.keep_whole = keep_whole
        self._parts: list[str] = []
        self._text = ""  # the parts joined, refreshed when a frame needs it
        self._settled = 0  # characters printed for good (kept whole)
        self._labelled = False  # the label is printed above (kept whole)
        self.closed = False

    @property
    def started(self) -> bool:
        return bool(self.text.strip())

    @property
    def text(self) -> str:
        if self._parts:
            self._text += "".join(self._parts)
            self._parts.clear()
        return self._text

    def add(self, text: str) -> None:
        # Tabs would make wrapped rows longer than their text; blank lines before any thinking
        # would only push it down.
        text = text.replace("\t", "    ")
        if not self._text and not self._parts:
            text = text.lstrip("\n")
        if text:
            self._parts.append(text)

    # -- while it arrives ----------------------------------------------------------------------

    def settle(self, options: ConsoleOptions) -> list[RenderableType]:
        """Kept whole: the label and the rows that can no longer change, to print for good."""
        if not self.keep_whole or not self.started:
            return []
        above: list[RenderableType] = []
        if not self._labelled:
            above.append(self._label())
            self._labelled = True
        text = self.text
        rest = text[self._settled :]
        end = rest.rfind("\n") + 1  # whole lines are done
        partial = rest[end:]
        if partial:
            rows = self._wrap(partial, options)
            if len(rows) > 1:
                # Greedy wrapping never changes a row above the last as text is added.
                cut = sum(len(row) for row in rows[:-1])
                while cut < len(partial) and partial[cut] == " ":
                    cut += 1  # the spaces a row ended with: the next row starts after them
                end += cut
        if end:
            above.append(self._body(rest[:end], options))
            self._settled += end
        return above

    def live(self, options: ConsoleOptions, max_rows: int) -> RenderableType:
        """What the live area shows meanwhile: the newest rows (and the label, when folded)."""
        from rich.console import Group

        from wai.render.live_region import Lines

        text = self.text
        if self.keep_whole:
            rest = text[self._settled :]
            rows = self._rows(rest, options) if rest else []
            return Lines(rows[-max_rows:])
        budget = options.max_width * max_rows * _TAIL_CELLS_PER_ROW
        tail = text[-budget:]
        if len(tail) < len(text):
            # Start the shown part where a line (else a word) starts, so its rows wrap as they will.
            start = tail.find("\n") + 1 or tail.find(" ") + 1
            tail = tail[start:]
        room = max_rows - 1
        rows = self._rows(tail, options)[-room:] if room > 0 else []
        return Group(self._label(), Lines(rows))

    # -- when it ends --------------------------------------------------------------------------

    def close(
        self, options: ConsoleOptions, *, answered: bool, tokens: int, seconds: float
    ) -> list[RenderableType]:
        """What to print for good when the thinking is over: folded to one line once the answer
        has begun (unless kept whole); the whole of it when no answer came, as it is all there is."""
        from rich.text import Text

        from wai.render.live_region import Lines

        self.closed = True
        if not self.started:
            return []
        above: list[RenderableType] = []
        if self.keep_whole or not answered:
            if not self._labelled:
                above.append(self._label())
                self._labelled = True
            rest = self.text[self._settled :].rstrip()
            if rest:
                above.append(self._body(rest, options))
            self._settled = len(self.text)
        if answered:
            if self.keep_whole:
                above.append(Lines([[]]))  # a blank line between the thinking and its summary
            above.append(Text(fold_line(tokens, seconds), style="wai.thinking.fold"))
            above.append(Lines([[]]))  # and one before the answer
        return above

    # -- rendering -----------------------------------------------------------------------------

    def _label(self) -> RenderableType:
        from rich.text import Text

        return Text(LABEL, style="wai.thinking.label")

    def _body(self, text: str, options: ConsoleOptions) -> RenderableType:
        from wai.render.live_region import Lines

        return Lines(self._rows(text[:-1] if text.endswith("\n") else text, options))

    def _rows(self, text: str, options: ConsoleOptions) -> list[list[Segment]]:
        from rich.text import Text

        from wai.render.live_region import render_lines

        return render_lines(self.console, Text(text, style="wai.thinking"), options)

    def _wrap(self, text: str, options: ConsoleOptions) -> list[str]:
        from rich.text import Text

        return [row.plain for row in Text(text).wrap(self.console, options.max_width)]

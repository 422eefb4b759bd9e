"""The live area at the bottom of the answer: Rich's Live, drawn only when told, never taller than
the screen, and erased correctly after the terminal narrowed and re-wrapped it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.control import Control
from rich.live import Live
from rich.live_render import LiveRender
from rich.segment import ControlType, Segment

_NEW_LINE = Segment.line()


def _plain(segment: Segment) -> bool:
    """True when spaces in this segment show nothing (no background, underline, ...)."""
    style = segment.style
    return not segment.control and (
        style is None or not (style.bgcolor or style.underline or style.reverse or style.strike)
    )


def trim(line: list[Segment]) -> list[Segment]:
    """The line without the blank padding Rich adds on the right, so that a glyph the terminal
    draws wider than Rich measured does not wrap the line onto another row."""
    end = len(line)
    while end and _plain(line[end - 1]):
        segment = line[end - 1]
        text = segment.text.rstrip(" ")
        if text:
            return [*line[: end - 1], Segment(text, segment.style)]
        end -= 1
    return line[:end]


def render_lines(
    console: Console, renderable: RenderableType, options: ConsoleOptions
) -> list[list[Segment]]:
    return [trim(line) for line in console.render_lines(renderable, options, pad=False)]


class Lines:
    """Lines already rendered (lists of segments), drawn as they are."""

    def __init__(self, lines: Sequence[list[Segment]] = ()) -> None:
        self.lines = list(lines)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from line
            yield _NEW_LINE


class _RegionRender(LiveRender):
    """Rich's LiveRender, remembering each drawn line's width.

    Rich moves the cursor up by the number of lines it drew. When the terminal has since become
    narrower, terminals that re-wrap (VTE, iTerm2, kitty, tmux, Windows Terminal) show each long
    line on several rows, so the region is counted again at the new width before it is erased.
    """

    def __init__(self, console: Console) -> None:
        super().__init__(Lines())
        self._console = console
        self._widths: list[int] = []
        self._drawn_at = 0

    def rows_now(self) -> int:
        if self._shape is None:
            return 0
        width = self._console.width
        if width >= self._drawn_at:
            return self._shape[1]
        return sum(max(1, -(-drawn // width)) for drawn in self._widths)

    def position_cursor(self) -> Control:
        rows = self.rows_now()
        if rows == 0:
            return Control()
        return Control(
            ControlType.CARRIAGE_RETURN,
            (ControlType.ERASE_IN_LINE, 2),
            *(((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2)) * (rows - 1)),
        )

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options, pad=False)
        if self.vertical_overflow != "visible" and len(lines) > options.size.height:
            # The screen shrank since the frame was made: the next frame settles what is cut here.
            lines = lines[-options.size.height :]
        self._shape = Segment.get_shape(lines)
        self._widths = [Segment.get_line_length(line) for line in lines]
        self._drawn_at = options.max_width
        for index, line in enumerate(lines):
            if index:
                yield _NEW_LINE
            yield from line


class Region:
    """Settled output goes above, the unfinished tail is redrawn below, one write per frame."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live = Live(
            Lines(),
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
            vertical_overflow="crop",
        )
        self._render = _RegionRender(console)
        self._live._live_render = self._render

    @property
    def active(self) -> bool:
        return self._live.is_started

    def start(self) -> None:
        self._live.start()

    def show(self, view: RenderableType, above: Sequence[RenderableType] = ()) -> None:
        """Print `above` (for good) and redraw the live area as `view`."""
        self._live.update(view)
        # A print draws the live area from the LiveRender, which update() alone leaves as it was.
        self._render.set_renderable(view)
        if above:
            # While the Live is on, a print erases the area, prints, and redraws it: one write.
            self.console.print(Group(*above))
        else:
            self._live.refresh()

    def stop(self) -> None:
        """Erase the live area and give the terminal back (cursor shown)."""
        self._live.update(Lines())
        self._live.stop()

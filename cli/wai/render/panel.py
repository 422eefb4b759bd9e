"""The live panel: a reply's markdown rendered as it streams, in time linear in its length.

Layout: a dim rule titled with the model, backend and precision; the model's thinking, if it
sends any (see render.thinking); the answer; a one-line footer.
Settled markdown blocks are rendered once and printed for good; only the unfinished last block
lives in a small Live area below them, never taller than the screen, so nothing is hidden and
nothing is written twice into the scrollback. Frames are drawn by a background ticker at most
`refresh_per_second` times a second (fewer when a frame is costly), so the backend only appends
text and the latest text is on screen within one frame.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, assert_never

from wai.events import Event, Finish, Loaded, Notice, PromptRead, Reasoning, Token, Usage
from wai.render.footer import backend_label, footer_text
from wai.render.markdown_stream import Block, BlockSplitter, Fence
from wai.terminal.safe_text import terminal_safe
from wai.turn_result import TurnInfo, TurnResult

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType
    from rich.segment import Segment
    from rich.spinner import Spinner
    from rich.text import Text

    from wai.render.live_region import Region
    from wai.render.markdown_view import BlockLayout
    from wai.render.thinking import ThinkingView

MIN_WIDTH = 20
MIN_HEIGHT = 5
# A frame may cost at most this share of the time between frames (slow machines, huge tails).
_FRAME_BUDGET = 0.25


def panel_supported(console: Console) -> bool:
    """Whether the live panel can run on `console`; otherwise use plain text.

    It needs a real terminal that understands cursor movement (not TERM=dumb or unknown) and
    room for a live area.
    """
    if not console.is_terminal or console.is_dumb_terminal or console.is_jupyter:
        return False
    width, height = console.size
    return width >= MIN_WIDTH and height >= MIN_HEIGHT


def _title(info: TurnInfo, width: int) -> Text:
    """Model, backend and precision; on a narrow terminal the model's id loses its namespace first."""
    from rich.cells import cell_len
    from rich.text import Text

    backend = " · " + backend_label(info)
    full = terminal_safe(info.model)  # a catalog's or a server's name: text only
    short = full.rsplit("/", 1)[-1]
    for model, meta in ((full, backend), (short, backend), (short, "")):
        if cell_len(model + meta) + 2 <= width:
            break
    return Text.assemble((model, "wai.title"), (meta, "wai.meta"))


class PanelSink:
    """Shows one turn on a terminal. Use only where `panel_supported(console)` is true."""

    tells_output_cap = True
    shows_waiting = True

    def __init__(
        self,
        console: Console,
        *,
        show_stats: bool = True,
        show_thinking: bool = False,
        refresh_per_second: float = 12.0,
    ) -> None:
        self.console = console
        self.show_stats = show_stats
        self.show_thinking = show_thinking
        self._interval = 1.0 / refresh_per_second
        self._incoming: deque[str] = deque()  # appended by feed(), drained by frames
        self._tokens_seen = 0  # output events, thinking included (it is generated output too)
        # The thinking that came before the answer: appended by feed(), drained by frames.
        self._thinking_incoming: deque[str] = deque()
        self._thinking: ThinkingView | None = None
        self._thoughts = 0
        self._thinking_began: float | None = None
        self._answer_began: float | None = None
        self._lock = threading.Lock()  # one frame at a time
        self._splitter = BlockSplitter()
        self._layout: BlockLayout | None = None
        self._region: Region | None = None
        self._ticker: _Ticker | None = None
        self._theme_pushed = False
        self._size: tuple[int, int] = (0, 0)
        self._next_frame = 0.0
        self._rows_done = 0  # rendered rows of the tail block already printed (tall blocks)
        self._rows_width = 0  # ... at this width
        self._chars_done = 0  # ... holding this many letters and digits
        self._code_done = 0  # code lines of the tail's fence already printed (tall code)
        self._waiting = True  # no text yet: a spinner shows
        self._spinner: Spinner | None = None  # one for the turn: a new one would always show frame 1
        self._started_at = 0.0  # when the panel was first drawn, for the seconds waited
        self._prompt_read: tuple[int, int] | None = None  # tokens of the prompt read, of how many
        self._text: list[str] = []  # the whole reply so far, for the fallback if drawing fails
        self._printed = 0  # characters of it settled and printed

    # -- the Sink protocol ----------------------------------------------------------------

    def start(self, info: TurnInfo) -> None:
        from rich.rule import Rule

        from wai.render.live_region import Region
        from wai.render.markdown_view import BlockLayout
        from wai.render.theme import panel_theme

        self.console.push_theme(panel_theme())
        self._theme_pushed = True
        self.console.print(
            Rule(_title(info, self.console.width), characters="─", style="wai.rule", align="left")
        )
        self.console.line()
        self._layout = BlockLayout()
        self._region = Region(self.console)
        self._region.start()
        atexit.register(self._abandon)
        self._started_at = time.monotonic()
        with self._lock:
            self._frame()
        self._ticker = _Ticker(self._interval, self._tick)
        self._ticker.start()

    def feed(self, event: Event) -> None:
        match event:
            case Token(text=text) if text:
                if self._answer_began is None:
                    self._answer_began = time.monotonic()
                safe = terminal_safe(text)
                self._incoming.append(safe)
                self._text.append(safe)
                self._tokens_seen += 1
            case PromptRead(read=read, total=total):
                self._prompt_read = (read, total)
            case Reasoning(text=text) if text:
                self._tokens_seen += 1
                if self._answer_began is not None:
                    return  # thinking after the answer began: kept in the result, not drawn into it
                if self._thinking_began is None:
                    self._thinking_began = time.monotonic()
                self._thoughts += 1
                self._thinking_incoming.append(terminal_safe(text))
            case Token() | Reasoning() | Usage() | Finish() | Loaded() | Notice():
                pass  # nothing to draw: the footer is drawn from the result, at the end
            case _:
                assert_never(event)

    def finish(self, result: TurnResult) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        if not self._theme_pushed:  # start() was cut short
            from wai.render.theme import panel_theme

            self.console.push_theme(panel_theme())
            self._theme_pushed = True
        region = self._region
        try:
            with self._lock:
                try:
                    if region is not None and region.active:
                        self._frame(final=True)
                except Exception:
                    # Never lose the answer to a drawing fault: what is left goes out as text.
                    if region is not None:
                        region.stop()
                    self.console.print(self._unsettled_text(), markup=False, highlight=False, end="")
                    raise
                finally:
                    if region is not None and region.active:
                        region.stop()
            # Without stats, a reply stopped by the output cap still says so (tells_output_cap).
            if self.show_stats or result.finish_reason == "length":
                layout = self._layout
                if layout is not None and layout.started:
                    self.console.line()
                footer = footer_text(
                    result,
                    width=self.console.width - 1,
                    tokens_seen=self._tokens_seen,
                    cap_only=not self.show_stats,
                )
                self.console.print(footer)
        finally:
            atexit.unregister(self._abandon)
            if self._theme_pushed:
                self.console.pop_theme()
                self._theme_pushed = False

    # -- frames -----------------------------------------------------------------------------

    def _tick(self) -> None:
        """Called by the ticker between frames: draw when there is something new to show."""
        size = self.console.size
        if (
            not self._incoming
            and not self._thinking_incoming
            and (size.width, size.height) == self._size
            and not self._waiting
        ):
            return
        now = time.monotonic()
        if now < self._next_frame:
            return
        with self._lock:
            if self._region is None or not self._region.active:
                return
            self._frame()
        cost = time.monotonic() - now
        self._next_frame = now + cost / _FRAME_BUDGET

    def _frame(self, *, final: bool = False) -> None:
        """Settle what can be settled, print it above, and redraw the tail. Holds the lock."""
        assert self._region is not None
        # Thinking first: whatever of it was fed came before the answer's first piece.
        thinking = self._take_thinking()
        pieces: list[str] = []
        while self._incoming:
            pieces.append(self._incoming.popleft())
        blocks = self._splitter.feed("".join(pieces)) if pieces else []
        if final:
            blocks.extend(self._splitter.close())
        width, height = self.console.size
        self._size = (width, height)
        # One column spare: a glyph the terminal draws wider than Rich measured must not wrap a line.
        options = self.console.options.update(width=max(1, width - 1), height=None)
        above: list[RenderableType] = []
        thinking_view: RenderableType | None = None
        if thinking is not None and not thinking.closed:
            answered = bool(pieces) or self._printed > 0
            if answered or final:
                above.extend(
                    thinking.close(
                        options, answered=answered, tokens=self._thoughts, seconds=self._thinking_time()
                    )
                )
            elif thinking.started:
                above.extend(thinking.settle(options))
                self._waiting = False
                thinking_view = thinking.live(options, _live_rows(height))
        for block in blocks:
            self._settle(block, above, options)
        if final:
            view = self._empty()
        elif thinking_view is not None:
            view = thinking_view
        else:
            view = self._view(above, options, _live_rows(height))
        self._region.show(view, above)
        self._printed += sum(len(block.text) for block in blocks)

    def _take_thinking(self) -> ThinkingView | None:
        if self._thinking_incoming and self._thinking is None:
            from wai.render.thinking import ThinkingView

            self._thinking = ThinkingView(self.console, keep_whole=self.show_thinking)
        while self._thinking_incoming:
            piece = self._thinking_incoming.popleft()
            if self._thinking is not None:
                self._thinking.add(piece)
        return self._thinking

    def _thinking_time(self) -> float:
        if self._thinking_began is None:
            return 0.0
        return (self._answer_began or time.monotonic()) - self._thinking_began

    def _lines(self, renderable: RenderableType, options: ConsoleOptions) -> list[list[Segment]]:
        from wai.render.live_region import render_lines

        return render_lines(self.console, renderable, options)

    def _settle(self, block: Block, above: list[RenderableType], options: ConsoleOptions) -> None:
        from wai.render.live_region import Lines
        from wai.render.markdown_view import Led, code_syntax

        layout = self._layout
        assert layout is not None
        code_done = self._code_done
        self._code_done = 0
        if code_done and block.fence is not None:
            # The first lines of this code block are out already; print the rest the same way.
            rest = "".join(block.code_lines()[code_done:]).rstrip()
            above.append(Lines(self._lines(Led(code_syntax(rest, block.fence.lexer), "keep"), options)))
            layout.note("fence")
            return
        led = layout.place(block)
        if led is not None:
            above.append(Lines(self._unprinted(self._lines(led, options), options)))
        self._rows_done = self._chars_done = 0

    def _unprinted(self, lines: list[list[Segment]], options: ConsoleOptions) -> list[list[Segment]]:
        """The tail block's rows less those printed already, found again after a resize."""
        if self._rows_done and options.max_width != self._rows_width:
            # Re-wrapped at a new width: skip rows until the letters printed so far are used up.
            # A row holding both printed and unprinted text is shown again rather than lost.
            count, skip = 0, 0
            for line in lines:
                letters = _letters(line)
                if count + letters > self._chars_done:
                    break
                count += letters
                skip += 1
            self._rows_done, self._rows_width = skip, options.max_width
        return lines[self._rows_done :]

    def _view(self, above: list[RenderableType], options: ConsoleOptions, max_rows: int) -> RenderableType:
        """The tail as it stands, at most `max_rows` rows; taller tails print their top for good."""
        from wai.render.live_region import Lines

        fence = self._splitter.tail_fence
        if fence is not None:
            return self._fence_view(fence, above, options, max_rows)
        block = self._splitter.tail_block()
        if not block.text.strip():
            return self._empty()
        self._waiting = False
        assert self._layout is not None
        led = self._layout.place(block, commit=False)
        if led is None:
            return self._empty()
        lines = self._unprinted(self._lines(led, options), options)
        if len(lines) > max_rows:
            # Rows that can no longer change go out: not the last row of the text so far, nor the
            # unfinished line's while it may still start a block of its own.
            partial = self._splitter.partial
            keep = len(partial)
            if self._splitter.partial_continues:
                keep -= max(0, partial.rfind(" "))
            stable = Block(block.text[: len(block.text) - keep], joins=block.joins, number=block.number)
            stable_led = self._layout.place(stable, commit=False)
            stable_rows = len(self._lines(stable_led, options)) - 1 - self._rows_done if stable_led else 0
            cut = max(0, min(len(lines) - max_rows, stable_rows))
            if cut:
                above.append(Lines(lines[:cut]))
                self._rows_done += cut
                self._rows_width = options.max_width
                self._chars_done += sum(_letters(line) for line in lines[:cut])
                lines = lines[cut:]
            lines = lines[-max_rows:]
        return Lines(lines)

    def _fence_view(
        self, fence: Fence, above: list[RenderableType], options: ConsoleOptions, max_rows: int
    ) -> RenderableType:
        from wai.render.live_region import Lines
        from wai.render.markdown_view import Led, code_syntax

        assert self._layout is not None
        self._waiting = False
        code = self._splitter.tail_code_lines(self._code_done)
        partial = self._splitter.partial
        if partial and not fence.is_closing_prefix(partial):
            shown = [*code, fence.code_line(partial)]
        else:
            shown = code
        lead = self._layout.lead(Block("", fence), "fence") if self._code_done == 0 else "keep"

        def render(lines: list[str]) -> list[list[Segment]]:
            return self._lines(Led(code_syntax("".join(lines).rstrip(), fence.lexer), lead), options)

        rows = render(shown)
        if len(rows) > max_rows:
            excess = len(rows) - max_rows
            # Never print trailing blank lines early: the whole block's rendering strips them.
            last_text = max((i for i, line in enumerate(shown) if line.strip()), default=-1)
            taken, removed = 0, 1 if lead == "add" else 0
            while removed < excess and taken < min(len(code), last_text):
                removed += len(self._lines(code_syntax(code[taken].rstrip("\n"), fence.lexer), options))
                taken += 1
            if taken:
                chunk = "".join(code[:taken])[:-1]  # one newline off: blank lines inside stay
                above.append(Lines(self._lines(Led(code_syntax(chunk, fence.lexer), lead), options)))
                self._code_done += taken
                lead = "keep"
                rows = render(shown[taken:])
            rows = rows[-max_rows:]
        return Lines(rows)

    def _empty(self) -> RenderableType:
        from rich.spinner import Spinner
        from rich.text import Text

        from wai.render.live_region import Lines

        if self._tokens_seen:
            self._waiting = False
        if not self._waiting:
            return Lines()
        text = Text(waiting_text(time.monotonic() - self._started_at, self._prompt_read), style="wai.waiting")
        if self._spinner is None:
            self._spinner = Spinner("dots", text, style="wai.spinner")
        else:
            self._spinner.update(text=text)
        return self._spinner

    # -- failure paths ------------------------------------------------------------------------

    def _unsettled_text(self) -> str:
        return "".join(self._text)[self._printed :]

    def _abandon(self) -> None:
        """At exit without finish() (an unexpected error): stop drawing, show the cursor."""
        if self._ticker is not None:
            self._ticker.stop()
        if self._region is not None and self._region.active:
            with contextlib.suppress(Exception):
                self._region.stop()


def waiting_text(seconds: float, prompt_read: tuple[int, int] | None) -> str:
    """What the spinner says before the reply's first token: the prompt's reading while a local
    model reads it (tokens read of all), else that the reply is awaited; the whole seconds waited
    from the first one on, so a long wait is seen to be going on."""
    waited = f" · {int(seconds)}s" if seconds >= 1 else ""
    if prompt_read is not None and prompt_read[0] < prompt_read[1]:
        read, total = prompt_read
        return f"reading the prompt: {read:,} of {total:,} tokens ({100 * read // total}%){waited}"
    return f"waiting for the reply{waited}"


def _live_rows(height: int) -> int:
    """The live area's most rows: half the screen, so that it still fits after the terminal is
    made narrower and re-wraps it (rows above the screen can no longer be erased)."""
    return max(1, min(height - 1, (height + 1) // 2))


def _letters(line: list[Segment]) -> int:
    return sum(char.isalnum() for segment in line if not segment.control for char in segment.text)


class _Ticker(threading.Thread):
    """Calls `tick` every `interval` seconds until stopped; a failing tick stops the ticking."""

    def __init__(self, interval: float, tick: Callable[[], None]) -> None:
        super().__init__(name="wai-panel-frames", daemon=True)
        self._interval = interval
        self._tick = tick
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                self._tick()
            except Exception:
                # finish() draws the final frame on the main thread and reports any fault there.
                return

    def stop(self) -> None:
        self._done.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=2.0)

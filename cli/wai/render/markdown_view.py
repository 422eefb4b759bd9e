"""Rendering markdown a block at a time so that the blocks read exactly as the whole text would.

`WaiMarkdown` is Rich's Markdown with the panel's choices (code in the terminal's own colours,
ordered lists whose number column does not depend on the list's length, so a list can be shown
item by item). `BlockLayout` puts the blank lines between separately rendered blocks where
rendering the whole text at once puts them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, Literal

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.markdown import CodeBlock, HorizontalRule, ListItem, Markdown, MarkdownElement, TableElement
from rich.rule import Rule
from rich.segment import Segment
from rich.syntax import Syntax, SyntaxTheme
from rich.table import Table
from rich.text import Text

from wai.render.markdown_stream import Block
from wai.render.theme import code_theme

if TYPE_CHECKING:
    from markdown_it.token import Token

_CONTAINERS = frozenset({"bullet_list_open", "ordered_list_open", "blockquote_open", "table_open"})
_NEW_LINE = Segment.line()
_code_theme: SyntaxTheme | None = None

Lead = Literal["keep", "drop", "add"]


def code_syntax(code: str, lexer: str) -> Syntax:
    """A code block, or a run of its lines (so no vertical padding: runs must join seamlessly).

    Without a background colour the code stands out by its indent and colours alone.
    """
    global _code_theme
    if _code_theme is None:
        _code_theme = code_theme()
    return Syntax(
        code,
        lexer,
        theme=_code_theme,
        word_wrap=True,
        padding=(0, 1, 0, 2),
    )


CODE_PADDING_X = 3  # columns code_syntax pads: 2 on the left, 1 on the right


class _CodeBlock(CodeBlock):
    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield code_syntax(str(self.text).rstrip(), self.lexer_name)


class _ListItem(ListItem):
    def render_number(
        self, console: Console, options: ConsoleOptions, number: int, last_number: int
    ) -> RenderResult:
        # Rich sizes the number column by the list's last number, which a list shown item by item
        # does not know yet: a column of two digits (three past 99) keeps items aligned instead.
        numeral = f"{number}.".rjust(max(3, len(str(number)) + 1)) + " "
        render_options = options.update(width=options.max_width - len(numeral))
        lines = console.render_lines(self.elements, render_options, style=self.style)
        number_style = console.get_style("markdown.item.number", default="none")
        first = Segment(numeral, number_style)
        padding = Segment(" " * len(numeral))
        for index, line in enumerate(lines):
            yield first if index == 0 else padding
            yield from line
            yield _NEW_LINE


class _Table(TableElement):
    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Rich's table draws blank top and bottom edges; the blank lines between blocks suffice.
        table = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            collapse_padding=True,
            style="markdown.table.border",
        )
        if self.header is not None and self.header.row is not None:
            for column in self.header.row.cells:
                heading = column.content.copy()
                heading.stylize("markdown.table.header")
                table.add_column(heading)
        if self.body is not None:
            for row in self.body.rows:
                table.add_row(*(cell.content for cell in row.cells))
        yield table


class _Rule(HorizontalRule):
    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Rule(style=console.get_style("markdown.hr", default="none"), characters="─")
        yield Text()


class WaiMarkdown(Markdown):
    elements: ClassVar[dict[str, type[MarkdownElement]]] = {
        **Markdown.elements,
        "fence": _CodeBlock,
        "code_block": _CodeBlock,
        "list_item_open": _ListItem,
        "table_open": _Table,
        "hr": _Rule,
    }

    def __init__(self, markup: str) -> None:
        super().__init__(markup, hyperlinks=False)
        # Rich draws raw HTML blocks as nothing but a blank line; drop them for steady spacing.
        self.parsed = [token for token in self.parsed if token.type != "html_block"]

    def top_level(self) -> list[Token]:
        return [token for token in self.parsed if token.level == 0]


class Led:
    """A block's rendering with its leading blank line kept, dropped, or added."""

    def __init__(self, body: RenderableType, lead: Lead) -> None:
        self.body = body
        self.lead = lead

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.lead == "add":
            yield _NEW_LINE
        segments: Iterable[Segment] = console.render(self.body, options)
        if self.lead == "drop":
            segments = iter(segments)
            first = next(segments, None)
            if first is not None and first != _NEW_LINE:
                yield first
        yield from segments


class BlockLayout:
    """The blank lines between blocks, as Rich's Markdown would put them in the whole text.

    Rich writes a blank line before a top-level element when the element closed last wants one
    (all but rules). Containers (lists, quotes, tables) decide it from their own content, so
    rendering them alone gives the same; other blocks need the previous block's answer. The
    first block of the answer starts without a blank line, and the next item of a list that
    was shown item by item follows it directly.
    """

    def __init__(self) -> None:
        self.started = False
        self._gap = False

    def lead(self, block: Block, first_type: str) -> Lead:
        if not self.started or block.joins:
            return "drop"
        if first_type in _CONTAINERS:
            return "keep"
        return "add" if self._gap else "keep"

    def place(self, block: Block, *, commit: bool = True) -> Led | None:
        """The block ready to print, or None when it shows nothing. `commit` records it as shown."""
        markdown = WaiMarkdown(block.render_text())
        top = markdown.top_level()
        if not top:
            return None
        led = Led(markdown, self.lead(block, top[0].type))
        if commit:
            self.note(top[-1].type)
        return led

    def note(self, last_type: str) -> None:
        """Record that a block ending with a top-level element of `last_type` was shown."""
        self.started = True
        self._gap = last_type != "hr"

"""Splits streaming markdown into settled top-level blocks and the unfinished tail.

A block is settled only at a point where CommonMark itself starts a new top-level block, so
rendering the settled blocks one by one gives what rendering the whole text at once gives. When
unsure the splitter keeps lines together: that costs a little render time, never correctness.

Only complete lines are examined and each line once, so the work is linear in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE_OPEN = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*?)\r?\n?$")
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|\r?\n?$)")
_THEMATIC_BREAK = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*\r?\n?$")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]|\r?\n?$)")
_LIST_MARKER = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])[ \t]+")
_ITEM_AT_ZERO = re.compile(r"^(?:([-+*])|(\d{1,9})([.)]))([ \t].*|\r?\n?)$", re.DOTALL)
_ORDERED_NUMBER = re.compile(r"^(\s*)\d{1,9}(?=[.)])", re.MULTILINE)
# HTML blocks that CommonMark keeps open across blank lines, until their end marker.
_HTML_COMMENT = re.compile(r"^ {0,3}<!--")
_HTML_RAW = re.compile(r"^ {0,3}<(pre|script|style|textarea)(?:[ \t>]|\r?\n?$)", re.IGNORECASE)


def _indent(line: str) -> int:
    """Leading columns, a tab counting to the next multiple of 4, as CommonMark counts them."""
    column = 0
    for char in line:
        if char == " ":
            column += 1
        elif char == "\t":
            column += 4 - column % 4
        else:
            break
    return column


@dataclass(frozen=True, slots=True)
class Fence:
    """An open fenced code block: its marker, where it stands, and its info string."""

    char: str
    length: int
    indent: int
    info: str

    @property
    def lexer(self) -> str:
        words = self.info.split()
        return words[0] if words else "text"

    def closes(self, line: str) -> bool:
        indent = _indent(line)
        # Inside a list item the item's own indent comes first; closers up to 3 columns past the
        # opener are accepted so a list's fence is not left open (which would only cost time).
        if indent > self.indent + 3:
            return False
        body = line.strip(" \t\r\n")
        return len(body) >= self.length and body == self.char * len(body)

    def code_line(self, line: str) -> str:
        """A content line without the opener's indentation, as markdown-it strips it."""
        strip = 0
        while strip < self.indent and strip < len(line) and line[strip] == " ":
            strip += 1
        return line[strip:]

    def is_closing_prefix(self, partial: str) -> bool:
        """True when an unfinished line may yet become this fence's closing line."""
        body = partial.strip(" \t")
        return bool(body) and body == self.char * len(body) and _indent(partial) <= self.indent + 3


def _open_fence(line: str, *, any_indent: bool) -> Fence | None:
    if any_indent and (item := _LIST_MARKER.match(line)):
        # "- ```python": the fence opens inside the item, at the item's content column.
        line = " " * item.end() + line[item.end() :]
    match = _FENCE_OPEN.match(line)
    if match is None:
        return None
    indent = _indent(match.group(1))
    if indent > 3 and not any_indent:
        return None
    marker, info = match.group(2), match.group(3)
    if marker[0] == "`" and "`" in info:
        return None
    return Fence(char=marker[0], length=len(marker), indent=indent, info=info.strip())


def _html_block_end(line: str) -> str | None:
    """The end marker of an HTML block that `line` opens and leaves open, if any."""
    lower = line.lower()
    if _HTML_COMMENT.match(line):
        end = "-->"
    elif raw := _HTML_RAW.match(line):
        end = f"</{raw.group(1).lower()}>"
    else:
        return None
    return None if end in lower[lower.index("<") + 2 :] else end


@dataclass(frozen=True, slots=True)
class Block:
    """Settled source text.

    `fence` is set when the block is one top-level fenced code block. `joins` is set when the
    block is the next item of the list the previous block ended with (no gap between them);
    `number` is then the item's number as the whole list shows it (ordered lists only).
    """

    text: str
    fence: Fence | None = None
    joins: bool = False
    number: int | None = None

    def render_text(self) -> str:
        """The text to render on its own: an ordered item renumbered as in its whole list."""
        if self.number is None:
            return self.text
        return _ORDERED_NUMBER.sub(lambda m: f"{m.group(1)}{self.number}", self.text, count=1)

    def code_lines(self) -> list[str]:
        """The code of a fenced block, one string per line (newline kept), closing fence left out."""
        if self.fence is None:
            return []
        lines = self.text.splitlines(keepends=True)
        opener = next(index for index, line in enumerate(lines) if line.strip())
        code = lines[opener + 1 :]
        if code and self.fence.closes(code[-1]):
            code.pop()
        return [self.fence.code_line(line) for line in code]


@dataclass(slots=True)
class _List:
    """The top-level list the pending block ends with: its marker kind and next number."""

    kind: str
    next_number: int


def _list_item(line: str) -> tuple[str, int | None, bool] | None:
    """(kind, number, has_content) when `line` is a list item at column 0."""
    match = _ITEM_AT_ZERO.match(line)
    if match is None or _THEMATIC_BREAK.match(line):
        return None
    bullet, number, delimiter, rest = match.groups()
    has_content = bool(rest.strip())
    if bullet:
        return bullet, None, has_content
    return delimiter, int(number), has_content


class BlockSplitter:
    """Feed text as it arrives; get back the blocks that can no longer change.

    Invariant: the settled blocks' texts joined, followed by `tail_text()`, is all the text fed.
    """

    def __init__(self) -> None:
        self._partial: list[str] = []  # pieces of the unfinished last line
        self._reset()

    def _reset(self, *, continues: _List | None = None, number: int | None = None) -> None:
        self._lines: list[str] = []  # complete lines of the pending block
        self._content = False  # the pending block has a non-blank line
        self._blank_after = False  # ... and its last line is blank
        self._listish = continues is not None  # ... and it holds a list item
        self._list = continues  # ... and it ends inside this top-level list (when certain)
        self._joins = continues is not None
        self._number = number
        self._fence: Fence | None = None  # a fence open somewhere in the pending block
        self._top_fence: Fence | None = None  # the pending block is this fenced code block
        self._code_start = 0  # index in _lines of the top fence's first code line
        self._html_end: str | None = None

    # -- feeding ------------------------------------------------------------------------

    def feed(self, text: str) -> list[Block]:
        settled: list[Block] = []
        if "\n" not in text:
            if text:
                if not self._partial:
                    self._line_begins(text[0], settled)
                self._partial.append(text)
            return settled
        self._partial.append(text)
        data = "".join(self._partial)
        self._partial.clear()
        start = 0
        while (end := data.find("\n", start)) >= 0:
            self._line(data[start : end + 1], settled)
            start = end + 1
        if start < len(data):
            self._line_begins(data[start], settled)
            self._partial.append(data[start:])
        return settled

    def close(self) -> list[Block]:
        """The text is complete: what is pending becomes a settled (possibly blank) block."""
        rest = "".join(self._lines) + "".join(self._partial)
        block = self._block(rest)
        self._partial.clear()
        self._reset()
        return [block] if rest else []

    # -- the tail -----------------------------------------------------------------------

    def tail_text(self) -> str:
        return "".join(self._lines) + "".join(self._partial)

    def tail_block(self) -> Block:
        """The tail as a block, as it would settle if the text ended here."""
        return self._block(self.tail_text())

    @property
    def partial(self) -> str:
        return "".join(self._partial)

    @property
    def tail_fence(self) -> Fence | None:
        """The fence when the tail is one top-level fenced code block still open."""
        return self._top_fence

    @property
    def partial_continues(self) -> bool:
        """Whether the unfinished line surely belongs to the tail's block, so that only its end can
        still change; False while it may yet start a block of its own."""
        partial = self._partial[0] if self._partial else ""
        if not partial or not self._content or self._fence is not None or self._html_end is not None:
            return True
        if self._blank_after:
            return False
        # Indented lines never start a top-level block; these may (headings, fences, items, ...).
        return partial[0] in " \t" or partial[0] not in "#`~-+*0123456789>|<=_"

    def tail_code_lines(self, skip: int = 0) -> list[str]:
        """Complete code lines of the tail's fence, from the `skip`-th on, indentation stripped."""
        fence = self._top_fence
        if fence is None:
            return []
        return [fence.code_line(line) for line in self._lines[self._code_start + skip :]]

    # -- the rules ----------------------------------------------------------------------

    def _line(self, line: str, settled: list[Block]) -> None:
        if self._fence is not None:
            self._lines.append(line)
            if self._fence.closes(line):
                self._fence = None
                if self._top_fence is not None:
                    self._settle(settled)
            return
        if self._html_end is not None:
            self._lines.append(line)
            if self._html_end in line.lower():
                self._html_end = None
            return
        if not line.strip():
            self._lines.append(line)
            self._blank_after = self._content
            return
        item = _list_item(line)
        if self._content:
            if item is not None and self._list is not None and item[0] == self._list.kind:
                self._next_item(settled)
            elif self._starts_new_block(line, item is not None):
                self._settle(settled)
        self._add(line, item, settled)

    def _add(self, line: str, item: tuple[str, int | None, bool] | None, settled: list[Block]) -> None:
        starts_block = not self._content
        certain = starts_block or self._blank_after
        self._lines.append(line)
        self._content = True
        self._blank_after = False
        if item is not None:
            kind, number, has_content = item
            if self._list is not None and self._list.kind != kind:
                self._list = None  # a new list, or text: not certain which, so stop cutting items
            elif self._list is None and (certain or (has_content and number in (None, 1))):
                self._list = _List(kind, (number or 1) + 1)
        if _LIST_ITEM.match(line) and not _THEMATIC_BREAK.match(line):
            self._listish = True
        fence = _open_fence(line, any_indent=self._listish)
        if fence is not None:
            self._fence = fence
            if starts_block and not self._listish and fence.indent <= 3:
                self._top_fence = fence
                self._code_start = len(self._lines)
            return
        self._html_end = _html_block_end(line)
        if self._html_end is not None:
            return
        if starts_block and (_ATX_HEADING.match(line) or _THEMATIC_BREAK.match(line)):
            self._settle(settled)  # single-line blocks: nothing that follows can change them

    def _line_begins(self, first: str, settled: list[Block]) -> None:
        """A new line's first character: after a blank line it may already end the pending block,
        which then settles without waiting for the whole line (a long paragraph is one line)."""
        if (
            self._content
            and self._blank_after
            and self._fence is None
            and self._html_end is None
            and first not in " \t\r\n"
            and not (self._listish and first in "-+*0123456789")
        ):
            self._settle(settled)

    def _starts_new_block(self, line: str, is_item: bool) -> bool:
        if _indent(line) > 0:
            return False  # indented lines may continue a list item or an indented code block
        if self._blank_after:
            # After a blank line only a list goes on, with another item (a new kind starts a new list).
            return not (self._listish and is_item and self._list is None)
        # Without a blank line, only headings and fences cut in (lazy continuation takes the rest).
        return bool(_ATX_HEADING.match(line) or _open_fence(line, any_indent=False))

    def _next_item(self, settled: list[Block]) -> None:
        current = self._list
        assert current is not None
        settled.append(self._block("".join(self._lines)))
        number = None if current.kind in "-+*" else current.next_number
        self._reset(continues=_List(current.kind, current.next_number + 1), number=number)

    def _settle(self, settled: list[Block]) -> None:
        settled.append(self._block("".join(self._lines)))
        self._reset()

    def _block(self, text: str) -> Block:
        return Block(text, self._top_fence, self._joins, self._number)

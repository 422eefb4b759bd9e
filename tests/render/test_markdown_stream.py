"""The block splitter: settled blocks never change, and rendering them one by one reads exactly as
rendering the whole answer at once."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tests.render.documents import MIXED, TRICKY, chunkings, synthetic
from wai.render.markdown_stream import Block, BlockSplitter
from wai.render.markdown_view import BlockLayout, Led, WaiMarkdown
from wai.render.theme import panel_theme

DOCUMENTS = {"mixed": MIXED, "tricky": TRICKY, "synthetic": synthetic(1200)}


def stream(chunks: list[str]) -> tuple[list[Block], list[str]]:
    """Feed chunks; return the settled blocks and, after each chunk, the blocks plus tail."""
    splitter = BlockSplitter()
    blocks: list[Block] = []
    seen: list[str] = []
    for chunk in chunks:
        blocks.extend(splitter.feed(chunk))
        seen.append("".join(block.text for block in blocks) + splitter.tail_text())
    blocks.extend(splitter.close())
    return blocks, seen


def render(renderable: object, width: int) -> str:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None, theme=panel_theme())
    console.print(renderable)
    return console.export_text()


def render_blocks(blocks: list[Block], width: int) -> str:
    layout = BlockLayout()
    return "".join(render(led, width) for block in blocks if (led := layout.place(block)) is not None)


def texts(text: str) -> list[str]:
    splitter = BlockSplitter()
    return [block.text for block in splitter.feed(text) + splitter.close()]


@pytest.mark.parametrize("name", DOCUMENTS)
def test_settled_blocks_and_tail_always_add_up_to_the_text_and_do_not_depend_on_chunking(name: str) -> None:
    text = DOCUMENTS[name]
    reference = texts(text)
    assert "".join(reference) == text
    for chunks in chunkings(text, 25):
        blocks, seen = stream(chunks)
        assert [block.text for block in blocks] == reference
        fed = ""
        for chunk, shown in zip(chunks, seen, strict=True):
            fed += chunk
            assert shown == fed


@pytest.mark.parametrize("name", DOCUMENTS)
@pytest.mark.parametrize("width", [40, 79])
def test_blocks_rendered_one_by_one_read_as_the_whole_answer_rendered_once(name: str, width: int) -> None:
    text = DOCUMENTS[name]
    blocks, _ = stream([text])
    assert len(blocks) > 3
    assert render_blocks(blocks, width) == render(Led(WaiMarkdown(text), "drop"), width)


@pytest.mark.parametrize(
    "fence",
    [
        "```\nfirst\n\nsecond\n\n\nthird\n```\n",
        "~~~ python\nx = 1\n\ny = 2\n~~~\n",
        "````md\n```\ninner\n\n```\n````\n",
        "```python {linenos=true}\nimport os\n\n# heading-like comment\n\n- not a list\n```\n",
    ],
)
def test_a_fence_with_blank_lines_inside_stays_one_block(fence: str) -> None:
    text = "Before.\n\n" + fence + "\nAfter.\n"
    for chunks in chunkings(text, 10):
        blocks, _ = stream(chunks)
        assert [block.text for block in blocks] == ["Before.\n\n", fence, "\nAfter.\n"]
        assert blocks[1].fence is not None


def test_an_unclosed_fence_settles_as_code_at_the_end() -> None:
    blocks, _ = stream(["Look:\n```js\nlet a = 1\n\nlet b"])
    assert blocks[-1].fence is not None
    assert blocks[-1].code_lines() == ["let a = 1\n", "\n", "let b"]


def test_a_paragraph_settles_at_the_blank_line_once_the_next_block_begins() -> None:
    splitter = BlockSplitter()
    assert splitter.feed("One line\nand another.\n\n") == []  # an indented line might go on with it
    # The next line's first character decides: a long paragraph need not be complete first.
    assert [block.text for block in splitter.feed("Next")] == ["One line\nand another.\n\n"]
    assert splitter.feed(" paragraph.\n") == []
    assert splitter.tail_text() == "Next paragraph.\n"
    assert splitter.partial_continues


def test_after_a_list_and_a_blank_line_a_marker_waits_for_the_whole_line() -> None:
    splitter = BlockSplitter()
    assert splitter.feed("- one\n\n-") == []
    assert not splitter.partial_continues  # "-" may be the next item, a rule, or a new list
    assert [block.text for block in splitter.feed(" - -\n")] == ["- one\n\n", "- - -\n"]


def test_a_heading_settles_as_soon_as_its_line_is_complete() -> None:
    splitter = BlockSplitter()
    assert splitter.feed("# Title") == []
    assert [block.text for block in splitter.feed("\nText")] == ["# Title\n"]
    assert [block.text for block in splitter.feed("\n## Sub\n")] == ["Text\n", "## Sub\n"]


def test_list_items_settle_one_by_one_and_numbering_follows_the_whole_list() -> None:
    text = "Steps:\n1. one\n1. two\n\n   more about two\n1. three\n\nAfter.\n"
    blocks = texts(text)
    assert blocks == ["Steps:\n1. one\n", "1. two\n\n   more about two\n", "1. three\n\n", "After.\n"]
    splitter = BlockSplitter()
    settled = splitter.feed(text) + splitter.close()
    assert [(block.joins, block.number) for block in settled] == [
        (False, None),
        (True, 2),
        (True, 3),
        (False, None),
    ]
    assert "3. three" in settled[2].render_text()
    assert " 3. three" in render_blocks(settled, 40)


def test_a_list_goes_on_across_blank_lines_and_indented_continuations() -> None:
    text = "- a\n\n  still a\n\n- b\n\n      code in b\n\nText.\n"
    assert texts(text) == ["- a\n\n  still a\n\n", "- b\n\n      code in b\n\n", "Text.\n"]


def test_a_table_ends_at_a_blank_line() -> None:
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n\nAfter the table.\n"
    assert texts(text) == ["| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |\n\n", "After the table.\n"]


def test_an_ordered_item_other_than_one_cannot_cut_a_paragraph() -> None:
    text = "Counting:\n2. two\n3. three\n\nEnd.\n"
    assert texts(text) == ["Counting:\n2. two\n3. three\n\n", "End.\n"]


def test_a_fence_cuts_into_a_paragraph_and_ends_at_its_closing_line() -> None:
    text = "Here is the code:\n```sh\nls\n```\nAnd text after.\n"
    assert texts(text) == ["Here is the code:\n", "```sh\nls\n```\n", "And text after.\n"]


def test_the_tail_reports_an_open_top_level_fence_and_its_code_lines() -> None:
    splitter = BlockSplitter()
    splitter.feed("Intro.\n\n```python\nimport os\n\nprint(os.sep")
    fence = splitter.tail_fence
    assert fence is not None and fence.lexer == "python"
    assert splitter.tail_code_lines() == ["import os\n", "\n"]
    assert splitter.tail_code_lines(1) == ["\n"]
    assert splitter.partial == "print(os.sep"
    assert fence.is_closing_prefix("``") and not fence.is_closing_prefix("`` x")


def test_a_very_long_line_streamed_in_tiny_pieces_is_joined_once() -> None:
    splitter = BlockSplitter()
    for _ in range(200_000):
        assert splitter.feed("x") == []
    assert len(splitter.partial) == 200_000

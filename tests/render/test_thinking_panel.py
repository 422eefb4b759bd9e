"""A reasoning model's thinking in the live panel, on a real pseudo-terminal: kept whole it is in
the scrollback once, in order, wrapped as the whole text would be; folded it leaves one line."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from tests.render.terminal import run_driver
from wai.render.theme import panel_theme

ANSWER = "New York is in the **north-east** of the USA.\n"


def long_thinking(seed: int = 7) -> str:
    """Paragraphs of a few lines, one paragraph several screens tall, words of every length."""
    rng = random.Random(seed)
    vocabulary = [
        "the",
        "user",
        "asks",
        "about",
        "geography",
        "Manhattan",
        "boroughs",
        "so",
        "I",
        "should",
        "consider",
        "north-eastern",
        "seaboard",
        "a",
        "supercalifragilistic",
        "42",
    ]

    def paragraph(words: int) -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(words))

    # Numbered words make every row distinct, so order and repeats show.
    numbered = " ".join(f"w{i}" + ("" if i % 5 else "-" + rng.choice(vocabulary)) for i in range(900))
    return "\n\n".join([paragraph(30), numbered, paragraph(12) + "\n" + paragraph(9), paragraph(40)]) + "\n"


def expected_rows(text: str, cols: int) -> list[str]:
    console = Console(width=cols - 1, file=io.StringIO(), record=True, color_system=None, theme=panel_theme())
    console.print(Text(text.strip("\n"), style="wai.thinking"))
    return [line.rstrip() for line in console.export_text().splitlines()]


def files(tmp_path: Path, thinking: str) -> tuple[Path, Path]:
    answer, thought = tmp_path / "answer.md", tmp_path / "thinking.txt"
    answer.write_text(ANSWER, encoding="utf-8")
    thought.write_text(thinking, encoding="utf-8")
    return answer, thought


@pytest.mark.e2e
def test_kept_whole_a_thinking_taller_than_the_screen_is_in_the_scrollback_once_in_order(
    tmp_path: Path,
) -> None:
    thinking = long_thinking()
    answer, thought = files(tmp_path, thinking)
    for cols in (80, 41):
        expected = expected_rows(thinking, cols)
        assert len(expected) > 3 * 24
        run = run_driver(
            answer, "--thinking", str(thought), "--show-thinking", "--chunk", "5", rows=24, cols=cols
        )
        assert run.exit_status == 0, run.lines
        lines = run.lines
        label = lines.index("thinking")
        fold = next(i for i, line in enumerate(lines) if line.startswith("thought for "))
        assert lines[label + 1 : fold - 1] == expected, cols
        assert lines[fold - 1] == "" and lines[fold + 1] == ""
        assert "north-east" in lines[fold + 2]
        assert run.cursor_visible


@pytest.mark.e2e
def test_folded_a_long_thinking_leaves_one_line_and_nothing_behind(tmp_path: Path) -> None:
    thinking = long_thinking()
    answer, thought = files(tmp_path, thinking)
    chunks = -(-len(thinking) // 5)
    # Paced, so that frames are drawn while it thinks.
    run = run_driver(
        answer, "--thinking", str(thought), "--chunk", "5", "--delay", "0.0005", rows=24, cols=60
    )
    assert run.exit_status == 0, run.lines
    assert run.lines[1] == ""
    assert run.lines[2].startswith(f"thought for {chunks} tokens, ")
    assert run.lines[3] == ""
    assert "north-east" in run.lines[4]
    # The live area showed the thinking's newest rows; none of them is left anywhere.
    assert not any("w1" in line or "geography" in line for line in run.lines)


@pytest.mark.e2e
def test_a_reply_that_never_answers_keeps_its_thinking_whole(tmp_path: Path) -> None:
    thinking = "Short thought one.\n\nShort thought two.\n"
    answer, thought = files(tmp_path, thinking)
    answer.write_text("", encoding="utf-8")
    run = run_driver(answer, "--thinking", str(thought), "--reason", "length", rows=24, cols=80)
    assert run.exit_status == 0, run.lines
    assert run.lines[2:6] == ["thinking", "Short thought one.", "", "Short thought two."]
    assert not any(line.startswith("thought for") for line in run.lines)
    assert any("the thinking used the whole output window" in line for line in run.lines)

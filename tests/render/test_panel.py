"""The live panel on a real pseudo-terminal: what ends up on screen and in the scrollback, rebuilt
by a terminal emulator from the bytes the program wrote."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from tests.render.documents import MIXED, synthetic
from tests.render.terminal import DRIVER, Run, environment, finish, rebuild, run_driver, spawn_driver
from wai.render.footer import format_stats
from wai.render.markdown_view import Led, WaiMarkdown
from wai.render.panel import PanelSink, panel_supported
from wai.render.theme import panel_theme
from wai.turn_result import Timings, TurnInfo, TurnResult

CJK = """# 東京の天気 🌤️

東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。春には桜が咲き、夏は蒸し暑く、秋は紅葉が美しく、冬は乾燥して晴れの日が多いです。🍣🍜🗼

- 渋谷：若者文化の中心地 🎧
- 新宿：高層ビルと繁華街が混在する地域で、夜遅くまで賑わっています

| 区 | 人口 | 特徴 |
|---|---|---|
| 千代田区 | 6万 | 皇居 |
| 世田谷区 | 94万 | 住宅地 |

```text
中文字符和English混合的一行文字，用来测试换行是否正确处理宽字符。
```

中文段落：北京是中华人民共和国的首都，也是全国的政治、文化和国际交往中心。北京有着三千多年的建城史。😀
"""


def expected_body(text: str, cols: int) -> list[str]:
    """The answer rendered once, as a whole, at the panel's width (one column spare)."""
    console = Console(width=cols - 1, file=io.StringIO(), record=True, color_system=None, theme=panel_theme())
    console.print(Led(WaiMarkdown(text), "drop"))
    # The emulator keeps no zero-width variation selectors.
    return [line.rstrip().replace("\ufe0f", "") for line in console.export_text().splitlines()]


def body_and_footer(run: Run) -> tuple[list[str], list[str]]:
    """Split the transcript into the answer (after the title rule) and the footer (after the last blank)."""
    assert run.lines[0].startswith(
        ("@cf/meta/llama-2-7b-chat-int8 · Workers AI int8 ─", "llama-2-7b-chat-int8 · ")
    )
    assert run.lines[1] == ""
    lines = run.lines[2:]
    last_blank = len(lines) - 1 - lines[::-1].index("")
    return lines[:last_blank], lines[last_blank + 1 :]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "answer.md"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.e2e
def test_an_answer_three_times_taller_than_the_terminal_is_in_the_scrollback_once_in_order(
    tmp_path: Path,
) -> None:
    text = synthetic(900)
    expected = expected_body(text, 80)
    assert len(expected) > 3 * 24
    run = run_driver(write(tmp_path, text), "--chunk", "4", "--delay", "0.0005", rows=24, cols=80)
    assert run.exit_status == 0
    body, footer = body_and_footer(run)
    assert body == expected
    assert re.match(r"✓ out \d+/1800 · in 31/2048 · first token \d", footer[0])
    assert run.cursor_visible


@pytest.mark.e2e
def test_a_code_block_and_a_paragraph_taller_than_the_screen_are_neither_hidden_nor_repeated(
    tmp_path: Path,
) -> None:
    code = "\n".join(f"    value_{n} = compute({n}, scale={n * 3})  # step {n}" for n in range(40))
    paragraph = " ".join(f"word{n}" for n in range(260))
    text = f"Intro.\n\n```python\ndef main():\n{code}\n\n    return 0\n```\n\n{paragraph}\n\nEnd.\n"
    run = run_driver(write(tmp_path, text), "--chunk", "3", "--delay", "0.001", rows=12, cols=50)
    body, _ = body_and_footer(run)
    assert body == expected_body(text, 50)
    assert sum(line.count("word100 ") for line in body) == 1


@pytest.mark.e2e
def test_a_40_column_terminal_wraps_everything_to_fit(tmp_path: Path) -> None:
    run = run_driver(write(tmp_path, MIXED), "--chunk", "2", "--delay", "0.001", rows=10, cols=40)
    body, footer = body_and_footer(run)
    assert body == expected_body(MIXED, 40)
    assert all(len(line) <= 40 for line in run.lines)
    assert footer[-1].endswith("Workers AI int8")  # the footer wraps between its pieces


@pytest.mark.e2e
def test_wide_characters_cjk_and_emoji_line_up(tmp_path: Path) -> None:
    run = run_driver(write(tmp_path, CJK), "--chunk", "2", "--delay", "0.002", rows=8, cols=40)
    body, _ = body_and_footer(run)
    assert body == expected_body(CJK, 40)


@pytest.mark.e2e
def test_ctrl_c_mid_answer_keeps_the_text_stops_the_panel_and_shows_the_cursor(tmp_path: Path) -> None:
    text = synthetic(300)
    cut = len(text) // 2
    pause = tmp_path / "pause"
    child = spawn_driver(
        write(tmp_path, text),
        "--chunk",
        str(cut),
        "--pause-after",
        "1",
        "--pause-file",
        str(pause),
        rows=12,
        cols=60,
    )
    deadline = time.monotonic() + 30
    while not Path(f"{pause}.paused").exists():
        assert time.monotonic() < deadline, "the driver never paused"
        time.sleep(0.02)
    time.sleep(0.4)  # a frame or more with the first half on screen
    child.sendintr()
    run = finish(child, 12, 60)
    assert run.exit_status == 130
    # Live stopped and the cursor is back: the last cursor command shows it, nothing is drawn after.
    assert run.raw.rindex("\x1b[?25h") > run.raw.rindex("\x1b[?25l")
    assert run.cursor_visible
    body, footer = body_and_footer(run)
    assert footer[0].startswith("interrupted")
    whole = expected_body(text[:cut], 60)
    assert body == whole


@pytest.mark.e2e
def test_no_color_keeps_layout_and_drops_colours(tmp_path: Path) -> None:
    run = run_driver(write(tmp_path, MIXED), "--chunk", "50", rows=24, cols=80, env={"NO_COLOR": "1"})
    assert run.exit_status == 0
    parameters = {int(p) for sgr in re.findall(r"\x1b\[([0-9;]*)m", run.raw) for p in sgr.split(";") if p}
    assert parameters and not {p for p in parameters if 30 <= p <= 49 or 90 <= p <= 107}
    body, _ = body_and_footer(run)
    assert body == expected_body(MIXED, 80)


@pytest.mark.e2e
def test_no_stats_leaves_out_the_footer(tmp_path: Path) -> None:
    run = run_driver(write(tmp_path, "Just this.\n"), "--no-stats", rows=10, cols=60)
    assert run.lines[1:] == ["", "Just this."]


@pytest.mark.e2e
def test_a_reply_cut_by_the_output_cap_says_how_to_get_more(tmp_path: Path) -> None:
    run = run_driver(write(tmp_path, "Partial answer"), "--reason", "length", rows=10, cols=100)
    _, footer = body_and_footer(run)
    assert footer[0].startswith("stopped at the output cap · ask it to continue for more")
    assert "out 1800/1800" in footer[0]  # the cap used up
    quiet = run_driver(
        write(tmp_path, "Partial answer"), "--reason", "length", "--no-stats", rows=10, cols=100
    )
    assert quiet.lines[2:] == [
        "Partial answer",
        "",
        "stopped at the output cap · ask it to continue for more (the model's cap is 1800)",
    ]


@pytest.mark.e2e
def test_widening_the_terminal_mid_answer_renders_the_rest_at_the_new_width(tmp_path: Path) -> None:
    words = " ".join(f"w{n}" for n in range(120))
    text = f"First paragraph.\n\n{words}\n"
    pause = tmp_path / "pause"
    child = spawn_driver(
        write(tmp_path, text),
        "--chunk",
        "30",
        "--pause-after",
        "2",
        "--pause-file",
        str(pause),
        rows=12,
        cols=40,
    )
    while not Path(f"{pause}.paused").exists():
        time.sleep(0.02)
    time.sleep(0.3)
    before = ""
    while True:
        try:
            before += child.read_nonblocking(100_000, timeout=0.2)
        except Exception:
            break
    child.setwinsize(12, 70)
    Path(f"{pause}.resume").touch()
    run = finish(child, 12, 70)
    # Rebuild on a screen that was 40 columns wide until the resize, then 70.
    lines_before, _ = rebuild(before, 12, 40)
    assert "First paragraph." in lines_before
    lines, cursor_visible = rebuild(before + run.raw, 12, 70)
    assert cursor_visible and run.exit_status == 0
    joined = " ".join(lines)
    assert joined.count("w119") == 1 and joined.count("First paragraph.") == 1
    assert max(len(line) for line in lines if line.startswith("w")) > 40


def test_panel_supported_needs_a_terminal_that_moves_the_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not panel_supported(Console(file=io.StringIO()))
    assert panel_supported(Console(file=io.StringIO(), force_terminal=True, width=80, height=24))
    assert not panel_supported(Console(file=io.StringIO(), force_terminal=True, width=10, height=24))
    monkeypatch.setenv("TERM", "dumb")
    assert not panel_supported(Console(file=io.StringIO(), force_terminal=True, width=80, height=24))


def test_the_sink_runs_in_process_and_prints_the_answer_once() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60, height=20, color_system=None)
    info = TurnInfo("m", "local", "q8_0", 4096, 512, 512, prompt_tokens=12, backend_title="llama.cpp")
    sink = PanelSink(console)
    sink.start(info)
    from wai.events import Finish, Token

    for piece in ["Hello ", "**world**", "\n\n- one\n", "- two\n"]:
        sink.feed(Token(piece))
    sink.feed(Finish("stop"))
    sink.finish(TurnResult(info, text="", finish_reason="stop", prompt_tokens=12, completion_tokens=4))
    lines, cursor_visible = rebuild(out.getvalue().replace("\n", "\r\n"), 20, 60)
    assert lines[1:6] == ["", "Hello world", "", " • one", " • two"]
    assert "llama.cpp q8_0" in lines[-1] and cursor_visible


def info(**changes: object) -> TurnInfo:
    fields: dict[str, object] = {
        "model": "@cf/meta/llama-2-7b-chat-fp16",
        "backend": "remote",
        "backend_title": "Workers AI",
        "precision": "fp16",
        "context_window": 3072,
        "max_output": 2500,
        "max_tokens": 2500,
        "prompt_tokens": 40,
    }
    fields.update(changes)
    return TurnInfo(**fields)  # type: ignore[arg-type]


def test_format_stats_gives_every_figure_and_marks_estimates() -> None:
    result = TurnResult(
        info(prompt_exact=False),
        finish_reason="stop",
        prompt_tokens=40,
        completion_tokens=101,
        usage_exact=False,
        prompt_exact=False,
        timings=Timings(first_token=0.5, total=2.5, load=3.25),
    )
    assert format_stats(result) == (
        "done · out ~101/2500 · in ~40/3072 · first token 0.50s · ~50.0 tok/s · load 3.25s · Workers AI fp16"
    )


def test_format_stats_says_how_to_get_more_after_the_output_cap() -> None:
    lowered = TurnResult(info(max_tokens=256), finish_reason="length", completion_tokens=256)
    assert format_stats(lowered).startswith(
        "stopped at the output cap · raise --max-tokens (up to 2500) for more · out 256/256 of 2500"
    )
    full = TurnResult(info(), finish_reason="length", completion_tokens=2500)
    assert "ask it to continue for more (the model's cap is 2500)" in format_stats(full)


def test_format_stats_when_interrupted_counts_the_tokens_seen() -> None:
    local = info(backend="local", backend_title="llama.cpp", precision=None)
    result = TurnResult(local, finish_reason="interrupted")
    result.timings = Timings(first_token=1.0, total=3.0)
    assert format_stats(result, tokens_seen=21) == (
        "interrupted · out ~21/2500 · first token 1.00s · ~10.0 tok/s · llama.cpp"
    )


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_in_tmux_narrowing_the_window_mid_answer_duplicates_and_loses_nothing(tmp_path: Path) -> None:
    code = "\n".join(
        f"    value_{n} = compute({n}, scale={n * 3})  # a comment long enough to wrap" for n in range(30)
    )
    text = f"Intro.\n\n```python\ndef main():\n{code}\n    return 0\n```\n\nThe closing words.\n"
    markdown = write(tmp_path, text)
    pause = tmp_path / "pause"
    socket = f"wai-test-{os.getpid()}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    driver = f"{sys.executable} {DRIVER} {markdown} --chunk 40 --pause-after 25 --pause-file {pause}"
    env = environment()
    command = f"{driver}; echo $? > {tmp_path / 'done'}; sleep 30"
    subprocess.run([*tmux, "new-session", "-d", "-x", "70", "-y", "14", command], env=env, check=True)
    try:
        deadline = time.monotonic() + 30
        while not Path(f"{pause}.paused").exists():
            assert time.monotonic() < deadline, "the driver never paused"
            time.sleep(0.05)
        time.sleep(0.4)
        subprocess.run([*tmux, "resize-window", "-x", "40", "-y", "14"], check=True)
        time.sleep(0.3)
        Path(f"{pause}.resume").touch()
        while not (tmp_path / "done").exists():
            assert time.monotonic() < deadline, "the driver never finished"
            time.sleep(0.05)
        time.sleep(0.2)
        shown = subprocess.run(
            [*tmux, "capture-pane", "-p", "-J", "-S", "-", "-E", "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    assert (tmp_path / "done").read_text().strip() == "0"
    for n in range(30):
        assert shown.count(f"value_{n} = compute") == 1, shown
    assert shown.count("Intro.") == 1 and shown.count("The closing words.") == 1
    assert "✓ out" in shown


def test_finish_without_a_start_still_gives_the_figures() -> None:
    # The turn driver calls finish() even when Ctrl-C came before start() completed.
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=60, height=20, color_system=None)
    result = TurnResult(info(), finish_reason="interrupted")
    PanelSink(console).finish(result)
    assert out.getvalue().startswith("interrupted · Workers AI fp16")


def test_a_length_stop_before_max_tokens_is_the_models_own_limit() -> None:
    from wai.render.footer import format_stats
    from wai.turn_result import TurnInfo, TurnResult

    info = TurnInfo(
        model="m", backend="remote", precision=None, context_window=100, max_output=50, max_tokens=50
    )
    own = TurnResult(info=info, text="x", finish_reason="length", prompt_tokens=5, completion_tokens=3)
    assert "model's own length limit" in format_stats(own) and "output cap" not in format_stats(own)
    capped = TurnResult(info=info, text="x", finish_reason="length", prompt_tokens=5, completion_tokens=50)
    assert "output cap" in format_stats(capped)


def test_a_footer_piece_as_wide_as_the_terminal_leaves_no_lone_separator() -> None:
    from wai.render.footer import footer_text
    from wai.turn_result import TurnInfo, TurnResult

    info = TurnInfo(
        model="m", backend="remote", precision=None, context_window=7968, max_output=4096, max_tokens=50
    )
    result = TurnResult(info=info, text="x", finish_reason="length", prompt_tokens=1234, completion_tokens=50)
    rows = footer_text(result, width=39).plain.split("\n")
    # A row already full would push its trailing dot onto a terminal row of its own.
    assert not any(row.endswith("·") and len(row) > 39 for row in rows), rows

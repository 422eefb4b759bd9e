"""`wai ask` on a terminal: the installed command on a pseudo-terminal, the screen rebuilt by a
terminal emulator from the exact bytes it wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from tests.render.terminal import environment, finish
from tests.support import pty_spawn
from tests.support.workers_ai_server import Reply, WorkersAIServer

ROWS, COLS = 24, 80
MODEL = "@cf/meta/llama-2-7b-chat-fp16"
WAI = str(Path(sys.executable).with_name("wai"))

ANSWER = [
    "# Steps\n\n",
    "New York is in the ",
    "**north-east** of the United States.\n\n",
    "- Manhattan\n",
    "- Brooklyn\n\n",
    "```python\n",
    "print('big apple')\n",
    "```\n",
]


def spawn(server: WorkersAIServer, *args: str, extra: dict[str, str] | None = None) -> pexpect.spawn:
    env = environment(
        {
            "CLOUDFLARE_BASE_URL": server.base_url,
            "CLOUDFLARE_ACCOUNT_ID": "acct",
            "CLOUDFLARE_API_TOKEN": "tok-terminal-secret",
            "WAI_HOME": os.environ["WAI_HOME"],
            **(extra or {}),
        }
    )
    return pty_spawn.spawn(
        WAI,
        ["ask", "-m", MODEL, *args],
        env=env,
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )


def stream_of(pieces: list[str], *, pause: float = 0.0) -> Reply:
    events: list[str | dict[str, object]] = [{"response": piece} for piece in pieces]
    events.append({"response": "", "usage": {"prompt_tokens": 20, "completion_tokens": len(pieces)}})
    return Reply.sse(events, pause=pause)


@pytest.mark.e2e
def test_the_answer_fills_a_live_panel_with_a_title_and_a_footer(workers_ai_server: WorkersAIServer) -> None:
    workers_ai_server.script(stream_of(ANSWER, pause=0.02))
    run = finish(spawn(workers_ai_server, "where is new york?"), ROWS, COLS)
    assert run.exit_status == 0, run.lines
    text = "\n".join(run.lines)
    assert "llama-2-7b-chat-fp16" in run.lines[0]  # the title names the model
    assert "north-east" in text and "**" not in text  # markdown rendered, not shown raw
    assert sum("Manhattan" in line for line in run.lines) == 1
    assert "print('big apple')" in text
    assert "tok/s" in text and "first token" in text  # the footer's figures
    assert "out 8/2500" in text and "in 20/3072" in text  # tokens against both windows
    assert run.cursor_visible


@pytest.mark.e2e
def test_ctrl_c_keeps_what_arrived_and_exits_130(workers_ai_server: WorkersAIServer) -> None:
    pieces = [f"word{i} " for i in range(400)]
    workers_ai_server.script(stream_of(pieces, pause=0.02))
    child = spawn(workers_ai_server, "count slowly")
    child.expect("word20")
    child.kill(signal.SIGINT)
    run = finish(child, ROWS, COLS, before=child.before + child.after)
    assert run.exit_status == 130
    text = "\n".join(run.lines)
    assert "word3 " in text or "word3" in text
    assert "word399" not in text
    assert "interrupted" in text
    assert run.cursor_visible
    assert "Traceback" not in run.raw


@pytest.mark.e2e
def test_no_color_and_dumb_terminals(workers_ai_server: WorkersAIServer) -> None:
    workers_ai_server.script(stream_of(ANSWER))
    run = finish(spawn(workers_ai_server, "hi", extra={"NO_COLOR": "1"}), ROWS, COLS)
    assert run.exit_status == 0
    assert "\x1b[3" not in run.raw and "\x1b[1;3" not in run.raw  # no foreground colours
    workers_ai_server.script(stream_of(ANSWER))
    dumb = finish(spawn(workers_ai_server, "hi", extra={"TERM": "dumb"}), ROWS, COLS)
    assert dumb.exit_status == 0
    assert "\x1b[" not in dumb.raw  # plain text: no cursor movement, no styles
    assert "**north-east**" in dumb.raw


@pytest.mark.e2e
def test_escape_sequences_in_a_reply_never_reach_the_terminal(workers_ai_server: WorkersAIServer) -> None:
    hostile = ["safe ", "\x1b]0;pwned-title\x07", "\x1b]52;c;Y2xpcGJvYXJk\x1b\\", "\x1b[2J", "text\n"]
    workers_ai_server.script(stream_of(hostile))
    run = finish(spawn(workers_ai_server, "hi"), ROWS, COLS)
    assert run.exit_status == 0
    assert "\x1b]0;" not in run.raw and "\x1b]52;" not in run.raw and "\x1b[2J" not in run.raw
    assert "safe" in "\n".join(run.lines) and "text" in "\n".join(run.lines)


@pytest.mark.e2e
def test_a_server_that_sends_no_usage_gets_one_estimate_everywhere(
    workers_ai_server: WorkersAIServer,
) -> None:
    pieces = [f" word{i}" for i in range(6)]
    for _ in range(2):
        workers_ai_server.script(Reply.sse([{"response": piece} for piece in pieces]))
    run = finish(spawn(workers_ai_server, "hi"), ROWS, COLS)
    assert run.exit_status == 0, run.lines
    assert "out ~6/2500" in "\n".join(run.lines)  # the panel's footer
    shown = subprocess.run(
        [WAI, "ask", "-m", MODEL, "--json", "hi"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "CLOUDFLARE_BASE_URL": workers_ai_server.base_url,
            "CLOUDFLARE_ACCOUNT_ID": "acct",
            "CLOUDFLARE_API_TOKEN": "tok",
        },
        timeout=30,
    )
    usage = json.loads(shown.stdout)["usage"]
    assert (usage["completion_tokens"], usage["exact"]) == (6, False)
    logs = subprocess.run([WAI, "logs", "--json"], capture_output=True, text=True, timeout=30)
    first = json.loads(logs.stdout)[-1]["id"]
    listed = subprocess.run([WAI, "logs", "--cid", first], capture_output=True, text=True, timeout=30).stdout
    assert "~6 out" in listed and " 0 out" not in listed


@pytest.mark.e2e
def test_the_output_cap_at_the_models_own_cap_says_to_ask_it_to_continue(
    workers_ai_server: WorkersAIServer,
) -> None:
    # Text enough for 2500 tokens: a usage beyond what the text could hold would be ignored.
    words = [{"response": f" w{i}" * 250} for i in range(4)]
    capped = Reply.sse([*words, {"response": "", "usage": {"prompt_tokens": 9, "completion_tokens": 2500}}])
    workers_ai_server.script(capped, capped)
    run = finish(spawn(workers_ai_server, "--max-tokens", "2500", "hi"), ROWS, COLS)
    text = " ".join(run.lines)
    assert "ask it to continue for more (the model's cap is 2500)" in text
    assert "--max-tokens" not in text
    env = {
        **os.environ,
        "CLOUDFLARE_BASE_URL": workers_ai_server.base_url,
        "CLOUDFLARE_ACCOUNT_ID": "acct",
        "CLOUDFLARE_API_TOKEN": "tok",
    }
    piped = subprocess.run(
        [WAI, "ask", "-m", MODEL, "--max-tokens", "2500", "hi"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert piped.returncode == 0
    assert piped.stderr == (
        "wai: warning: the reply stopped at the output cap (2500 tokens); "
        "ask it to continue for more (the model's cap is 2500)\n"
    )


def styles_in(raw: str) -> set[str]:
    """The SGR sequences (colour, bold, dim, ...) that `raw` holds, resets aside."""
    return set(re.findall(r"\x1b\[[0-9;]*m", raw)) - {"\x1b[0m", "\x1b[m"}


@pytest.mark.e2e
def test_color_never_means_what_no_color_means_no_bold_or_dim_either(
    workers_ai_server: WorkersAIServer,
) -> None:
    for extra, args in (({}, ("--color", "never")), ({"NO_COLOR": "1"}, ())):
        workers_ai_server.script(stream_of(ANSWER))
        run = finish(spawn(workers_ai_server, *args, "hi", extra=extra), ROWS, COLS)
        assert run.exit_status == 0
        assert styles_in(run.raw) == set(), args or extra
        assert "north-east" in "\n".join(run.lines) and "tok/s" in "\n".join(run.lines)  # still the panel
    workers_ai_server.script(stream_of(ANSWER))
    coloured = finish(spawn(workers_ai_server, "hi"), ROWS, COLS)
    assert styles_in(coloured.raw)  # the default does style the panel

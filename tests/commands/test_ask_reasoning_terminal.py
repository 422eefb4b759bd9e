"""A reasoning model's thinking on a terminal: the installed `wai` on a pseudo-terminal, the screen
rebuilt by a terminal emulator from the exact bytes it wrote."""

from __future__ import annotations

import os
import threading

import pexpect
import pytest

from tests.render.terminal import Run, environment, finish
from tests.support import pty_spawn
from tests.support.chat_terminal import expect_prompt, leave, spawn_chat
from tests.support.cli import WAI
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer, openai_chunks, usage_dict

ROWS, COLS = 24, 80
MODEL = "@cf/qwen/qwq-32b"
THINKING = ["The user asks ", "where New York is.\n", "Weighing the boroughs."]
ANSWER = ["New York is in the ", "**north-east** of the USA.\n"]


def spawn(server: WorkersAIServer, *args: str) -> pexpect.spawn:
    env = environment(
        {**server.client_env("tok-terminal", account="acct"), "WAI_HOME": os.environ["WAI_HOME"]}
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


def gated_reply(gate: threading.Event, *, answer: list[str] = ANSWER) -> Reply:
    """The thinking, then nothing until the test has seen it on screen, then the answer."""
    usage = usage_dict(20, len(THINKING) + len(answer), reasoning_tokens=len(THINKING))
    chunks = openai_chunks(THINKING, answer, usage=usage)
    split = 1 + len(THINKING)  # the role chunk, then one chunk per piece of thinking
    return Reply.gated(chunks[:split], gate, chunks[split:])


def run_with_thinking_seen(server: WorkersAIServer, *args: str) -> tuple[Run, str]:
    """Run `wai ask`; returns the run and what was on the wire while only the thinking had arrived."""
    gate = threading.Event()
    server.script(gated_reply(gate))
    child = spawn(server, *args, "where is new york?")
    child.expect("Weighing the boroughs")
    seen = child.before + child.after
    gate.set()
    return finish(child, ROWS, COLS, before=seen), seen


@pytest.mark.e2e
def test_the_thinking_shows_dimmed_as_it_arrives_then_folds_to_one_line(
    workers_ai_server: WorkersAIServer,
) -> None:
    run, seen = run_with_thinking_seen(workers_ai_server)
    assert run.exit_status == 0, run.lines
    assert "thinking" in seen and "where New York is." in seen
    assert "\x1b[2" in seen  # dim
    text = "\n".join(run.lines)
    assert "thought for 3 tokens, " in text
    assert "Weighing the boroughs" not in text and "where New York is" not in text  # folded away
    assert "north-east" in text and "**" not in text  # the answer, rendered
    fold = next(i for i, line in enumerate(run.lines) if "thought for" in line)
    answer = next(i for i, line in enumerate(run.lines) if "north-east" in line)
    assert fold < answer
    assert run.cursor_visible


@pytest.mark.e2e
def test_show_thinking_keeps_it_whole_above_the_answer(workers_ai_server: WorkersAIServer) -> None:
    run, _ = run_with_thinking_seen(workers_ai_server, "--show-thinking")
    assert run.exit_status == 0, run.lines
    lines = run.lines
    label = lines.index("thinking")
    first = next(i for i, line in enumerate(lines) if "The user asks where New York is." in line)
    second = next(i for i, line in enumerate(lines) if "Weighing the boroughs." in line)
    fold = next(i for i, line in enumerate(lines) if "thought for 3 tokens" in line)
    answer = next(i for i, line in enumerate(lines) if "north-east" in line)
    assert label < first < second < fold < answer
    assert sum("Weighing the boroughs" in line for line in lines) == 1  # printed once


@pytest.mark.e2e
def test_thinking_cut_by_the_cap_is_kept_and_the_footer_says_why(workers_ai_server: WorkersAIServer) -> None:
    usage = usage_dict(20, 3, reasoning_tokens=3)
    workers_ai_server.script(Reply.sse(openai_chunks(THINKING, [], finish="length", usage=usage)))
    run = finish(spawn(workers_ai_server, "--max-tokens", "3", "where is new york?"), ROWS, COLS)
    assert run.exit_status == 0, run.lines
    text = "\n".join(run.lines)
    assert "Weighing the boroughs." in text  # no answer came: the thinking is all there is
    assert "thought for" not in text
    assert "the thinking used the whole output window" in text
    assert "raise --max-tokens (up to 12000) or lower --reasoning-effort" in text
    assert "wai: warning: the thinking used the whole output window (3 tokens)" in text  # stderr too


@pytest.mark.e2e
def test_chat_shows_the_thinking_folded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    with WorkersAIServer(Simulation(thinking_tokens=6, reply_tokens=3)) as server:
        monkeypatch.setenv("CLOUDFLARE_BASE_URL", server.base_url)
        monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "account-1")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "token-1")
        child = spawn_chat("-m", MODEL, "--reasoning-effort", "medium")
        expect_prompt(child, "qwq-32b")
        child.send("where is new york?\r")
        child.expect("thought for 6 tokens")
        child.expect("token3")
        expect_prompt(child, "qwq-32b")
        child.send("/set reasoning_effort low\r")
        child.expect("reasoning_effort low")
        expect_prompt(child, "qwq-32b")
        child.send("and boston?\r")
        child.expect("token3")
        expect_prompt(child, "qwq-32b")
        assert leave(child) == 0
    efforts = [request.json.get("reasoning_effort") for request in server.requests]
    assert efforts == ["medium", "low"]
    second = server.requests[1].json["messages"]
    assert second[1] == {"role": "assistant", "content": "token1 token2 token3"}  # no thinking sent back

"""SIGTERM and SIGHUP mid-reply stop wai the way Ctrl-C does: the turn is kept, marked interrupted,
the terminal gets its cursor and modes back, and the exit status names the signal (143, 129).
And Ctrl-C during a long local prompt stops inside llama.cpp's batch, not after it."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pexpect
import pytest

from tests.render.terminal import environment, finish
from tests.support import pty_spawn
from tests.support.chat_terminal import expect_prompt
from tests.support.cli import WAI
from tests.support.tiny_gguf import build_tiny_llama
from tests.support.workers_ai_server import Reply, WorkersAIServer
from wai.store.database import Store

MODEL = "@cf/meta/llama-2-7b-chat-fp16"
ROWS, COLS = 24, 80
STOPS = [pytest.param(signal.SIGTERM, 143, id="SIGTERM"), pytest.param(signal.SIGHUP, 129, id="SIGHUP")]


def slow_reply() -> Reply:
    return Reply.sse([{"response": f"word{i} "} for i in range(400)], pause=0.02)


def stored_turns() -> list[tuple[str, str, bool]]:
    with Store.open_default() as store:
        cid = store.latest_conversation_id()
        assert cid is not None
        return [(t.data.prompt, t.data.reply, t.data.interrupted) for t in store.turns(cid)]


@pytest.mark.e2e
@pytest.mark.parametrize(("stop", "status"), STOPS)
def test_ask_stopped_by_a_signal_keeps_the_turn_and_the_cursor(
    server: WorkersAIServer, stop: signal.Signals, status: int
) -> None:
    server.script(slow_reply())
    child = pty_spawn.spawn(
        WAI,
        ["ask", "-m", MODEL, "count slowly"],
        env=environment({"WAI_HOME": os.environ["WAI_HOME"]}),
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect("word20")
    child.kill(stop)
    run = finish(child, ROWS, COLS, before=(child.before or "") + str(child.after))
    assert run.exit_status == status
    assert run.cursor_visible
    assert "interrupted" in "\n".join(run.lines)
    assert "Traceback" not in run.raw
    [(prompt, reply, interrupted)] = stored_turns()
    assert prompt == "count slowly" and interrupted
    assert reply.startswith("word0 word1") and "word399" not in reply


def chat_in_a_shell(*args: str) -> pexpect.spawn:
    """`wai chat ARGS` run by sh, which then prints wai's exit status and the terminal's modes."""
    script = f'"{WAI}" chat {" ".join(args)}; echo "status=$?"; stty -a'
    return pty_spawn.spawn(
        "sh",
        ["-c", script],
        env={**environment({"WAI_HOME": os.environ["WAI_HOME"]}), "PROMPT_TOOLKIT_NO_CPR": "1"},
        dimensions=(40, 120),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )


def wai_pid(shell: pexpect.spawn) -> int:
    children = Path(f"/proc/{shell.pid}/task/{shell.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def assert_terminal_restored(child: pexpect.spawn, status: int) -> None:
    child.expect(f"status={status}")
    child.expect(pexpect.EOF)
    modes = child.before or ""
    # Echo and line editing back on: what a shell needs after wai.
    assert re.search(r"(?<![-\w])echo(?![\w])", modes), modes
    assert re.search(r"(?<![-\w])icanon(?![\w])", modes), modes


@pytest.mark.e2e
@pytest.mark.parametrize(("stop", "status"), STOPS)
def test_chat_stopped_mid_reply_keeps_the_turn_restores_the_terminal_and_leaves(
    server: WorkersAIServer, stop: signal.Signals, status: int
) -> None:
    child = chat_in_a_shell("-m", MODEL)
    expect_prompt(child, "llama-2-7b-chat-fp16")
    server.script(slow_reply())
    child.send("tell me a long story\r")
    child.expect("word20")
    os.kill(wai_pid(child), stop)
    assert_terminal_restored(child, status)
    [(prompt, reply, interrupted)] = stored_turns()
    assert prompt == "tell me a long story" and interrupted
    assert reply.startswith("word0 word1") and "word399" not in reply


@pytest.mark.e2e
def test_chat_stopped_at_the_prompt_restores_the_terminal(server: WorkersAIServer) -> None:
    child = chat_in_a_shell("-m", MODEL)
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("half typed")
    child.expect("half typed")
    os.kill(wai_pid(child), signal.SIGTERM)
    assert_terminal_restored(child, 143)


@pytest.mark.e2e
def test_ctrl_c_during_a_long_local_prompt_stops_inside_the_batch(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "long.f16.gguf", ftype="f16", script="Hi!", context_length=8192)
    # About 6,000 byte tokens: with one thread, llama.cpp reads them 512 at a time.
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("abcde" * 1200)
    # A signal that lands in the moment between two batches stops the reading there, as the
    # user wants too, but shows nothing of the abort callback: a few tries, each stopped, and
    # one at least inside a batch.
    inside = 0
    for _ in range(4):
        output = interrupted_reading(model.path, prompt)
        [(_, reply, interrupted)] = stored_turns()[-1:]
        assert interrupted and reply == ""
        # llama.cpp says its decode was aborted, which only the abort callback does inside a batch.
        inside += "failed to decode, ret = 2" in output
        if inside:
            break
    assert inside


def interrupted_reading(model: Path, prompt: Path) -> str:
    """`wai ask` on a long local prompt, Ctrl-C once a batch or more was read: what it wrote."""
    child = pty_spawn.spawn(
        "sh",
        ["-c", f'exec "{WAI}" ask --debug --threads 1 --max-tokens 8 -m "{model}" - < "{prompt}"'],
        env=environment({"WAI_HOME": os.environ["WAI_HOME"]}),
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=60,
    )
    child.expect("prompt \\d+ tokens")  # --debug: planned, about to be read
    child.expect("llama_context")  # the context is being made; the prompt comes next
    child.expect(r"reading the prompt: [\d,]+ of")  # a batch or more read, more to come
    child.kill(signal.SIGINT)
    child.expect(pexpect.EOF)
    output = child.before or ""
    child.close()
    assert child.exitstatus == 130
    assert "interrupted before the reply began" in output
    return output


@pytest.mark.e2e
def test_a_terminal_that_hangs_up_mid_reply_still_leaves_the_turn_in_the_transcript(
    server: WorkersAIServer,
) -> None:
    server.script(slow_reply())
    child = pty_spawn.spawn(
        WAI,
        ["ask", "-m", MODEL, "count slowly"],
        env=environment({"WAI_HOME": os.environ["WAI_HOME"]}),
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect("word20")
    # The window closes: the terminal's master side goes away, the kernel sends SIGHUP, and every
    # later write to the terminal fails.
    os.close(child.child_fd)
    _, status = os.waitpid(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 129
    [(prompt, reply, interrupted)] = stored_turns()
    assert prompt == "count slowly" and interrupted
    assert reply.startswith("word0 word1") and "word399" not in reply

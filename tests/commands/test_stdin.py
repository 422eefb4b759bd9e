"""Stdin as users meet it: a `while read` loop, a pipe that stays silent, bytes that are not UTF-8."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pexpect
import pytest

from tests.render.terminal import environment
from tests.support import pty_spawn
from tests.support.cli import WAI, run_wai
from tests.support.workers_ai_server import WorkersAIServer

MODEL = "@cf/meta/llama-2-7b-chat-fp16"


def user_messages(server: WorkersAIServer) -> list[str]:
    return [request.json["messages"][-1]["content"] for request in server.requests]


@pytest.mark.e2e
def test_no_stdin_in_a_while_read_loop_asks_once_per_line(server: WorkersAIServer) -> None:
    loop = f'printf "q1\\nq2\\nq3\\n" | while read -r line; do "{WAI}" ask {{}} -m {MODEL} "$line"; done'
    done = subprocess.run(["sh", "-c", loop.format("--no-stdin")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert user_messages(server) == ["q1", "q2", "q3"]
    # Without it the first `wai ask` reads the rest of the loop's input: the case the README explains.
    server.forget()
    subprocess.run(["sh", "-c", loop.format("")], capture_output=True, text=True, timeout=60)
    assert user_messages(server) == ["q1\n\nq2\nq3\n"]


def test_no_stdin_needs_the_prompt_as_an_argument() -> None:
    done = run_wai("ask", "--no-stdin", "-m", MODEL, "-", stdin=b"piped")
    assert done.returncode == 2
    assert done.stderr == "wai: error: --no-stdin leaves no prompt (pass the prompt as an argument)\n"
    done = run_wai("tokens", "--no-stdin", "-m", MODEL, "hello", stdin=b"piped text is not counted")
    assert done.returncode == 0, done.stderr
    assert done.stdout == run_wai("tokens", "-m", MODEL, "hello").stdout


@pytest.mark.e2e
def test_a_silent_pipe_is_named_once_on_a_terminal(server: WorkersAIServer) -> None:
    child = pty_spawn.spawn(
        "sh",
        ["-c", f'(sleep 3; echo late) | "{WAI}" ask -m {MODEL} "what follows?"'],
        env=environment({"WAI_HOME": os.environ["WAI_HOME"]}),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect(pexpect.EOF)
    output = child.before or ""
    child.close()
    assert child.exitstatus == 0, output
    assert output.count("waiting for stdin") == 1
    assert user_messages(server) == ["what follows?\n\nlate\n"]


@pytest.mark.e2e
def test_a_silent_pipe_is_not_named_when_stderr_is_not_a_terminal(server: WorkersAIServer) -> None:
    process = subprocess.Popen(
        [WAI, "ask", "-m", MODEL, "what follows?"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(2.5)
    _, err = process.communicate(b"late\n", timeout=30)
    assert process.returncode == 0, err
    assert b"waiting" not in err


def test_stdin_that_is_not_utf8_is_replaced_with_one_warning(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", MODEL, "-", stdin=b"caf\xe9 \xff\xfe end", timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "wai: warning: stdin is not valid UTF-8: 3 bytes replaced with U+FFFD (\ufffd)\n"
    assert user_messages(server) == ["caf\ufffd \ufffd\ufffd end"]
    # Valid UTF-8 draws no warning.
    done = run_wai("ask", "-m", MODEL, "-", stdin="café".encode(), timeout=30)
    assert done.returncode == 0 and done.stderr == ""


@pytest.mark.parametrize("output", ["--json", "--jsonl"])
def test_input_that_is_not_utf8_is_among_the_jsons_warnings(server: WorkersAIServer, output: str) -> None:
    # Warned of on stderr before the turn, so told in the document's warnings with the plan's.
    done = run_wai(
        "ask", output, "-m", MODEL, "-s", os.fsdecode(b"be \xff brief"), "-", stdin=b"caf\xe9", timeout=30
    )
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout.splitlines()[0])
    assert first["warnings"] == [
        "stdin is not valid UTF-8: 1 byte replaced with U+FFFD (\ufffd)",
        "the system prompt is not valid UTF-8: 1 byte replaced with U+FFFD (\ufffd)",
    ]


def test_arguments_that_are_not_utf8_are_replaced_with_a_warning_each(server: WorkersAIServer) -> None:
    # The interpreter decodes argv bytes as os.fsdecode does (surrogateescape): so is this argv.
    done = run_wai(
        "ask", "-m", MODEL, "-s", os.fsdecode(b"be \xff brief"), os.fsdecode(b"hi \xfe"), timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "wai: warning: the prompt argument is not valid UTF-8: 1 byte replaced with U+FFFD (\ufffd)",
        "wai: warning: the system prompt is not valid UTF-8: 1 byte replaced with U+FFFD (\ufffd)",
    ]
    messages = server.requests[0].json["messages"]
    assert [m["content"] for m in messages] == ["be \ufffd brief", "hi \ufffd"]

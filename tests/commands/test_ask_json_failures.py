"""`--json` and `--jsonl` answer every failure in JSON: before sending as after, one `error` shape."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.cli import WAI, run_wai
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer

MODEL = "@cf/meta/llama-2-7b-chat-int8"


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation(reply_tokens=12)) as running:
        yield running


def env_for(server: WorkersAIServer) -> dict[str, str]:
    return server.client_env("tok-json-failures")


def one_document(stdout: str) -> dict[str, Any]:
    """stdout holds exactly one JSON object (json.loads refuses anything after it)."""
    document = json.loads(stdout)
    assert isinstance(document, dict)
    return document


def assert_error(error: object, code: str, exit_status: int, *words: str) -> None:
    assert isinstance(error, dict), error
    assert set(error) == {"code", "message", "exit_status"}
    assert error["code"] == code and error["exit_status"] == exit_status
    assert all(word in str(error["message"]) for word in words), error


# Failures found before anything is sent: (arguments, stdin, code, exit status, words of the message)
BEFORE_SENDING = [
    pytest.param(("-m", MODEL, "-"), ("word " * 6000).encode(), "window", 3, ("2048",), id="over-the-window"),
    pytest.param(("-m", "no-such-model", "hi"), None, "config", 2, ("no-such-model",), id="unknown-model"),
    pytest.param(("--cid", "nosuchid", "hi"), None, "usage", 2, ("nosuchid",), id="unknown-conversation"),
    pytest.param(("-m", MODEL, "--no-stdin", ""), None, "usage", 2, ("empty",), id="empty-prompt"),
    pytest.param(("-m", MODEL, "--max-tokens", "0", "hi"), None, "usage", 2, ("--max-tokens",), id="bad-int"),
    pytest.param(("-m", MODEL, "--temperature", "nan", "hi"), None, "usage", 2, ("nan",), id="nan"),
    pytest.param(("-m", MODEL, "--bogus", "hi"), None, "usage", 2, ("--bogus",), id="unknown-option"),
    pytest.param(("-m", MODEL, "--top-k", "99", "hi"), None, "usage", 2, ("--top-k",), id="backend-range"),
    pytest.param(("-m", "/nowhere/model.gguf", "hi"), None, "config", 2, ("/nowhere",), id="missing-file"),
]


@pytest.mark.parametrize(("args", "stdin", "code", "status", "words"), BEFORE_SENDING)
def test_a_failure_before_sending_is_one_json_document(
    server: WorkersAIServer,
    args: tuple[str, ...],
    stdin: bytes | None,
    code: str,
    status: int,
    words: tuple[str],
) -> None:
    done = run_wai("ask", "--json", *args, stdin=stdin, env=env_for(server))
    assert done.returncode == status, done.stderr
    document = one_document(done.stdout)
    assert_error(document["error"], code, status, *words)
    assert server.requests == []
    # The line on stderr stays for the person watching.
    assert str(document["error"]["message"]).split(":")[0] in done.stderr
    # The same keys as a turn's result, so `jq .text` or `.usage.prompt_tokens` never fails.
    ok = one_document(run_wai("ask", "--json", "-m", MODEL, "hi", env=env_for(server)).stdout)
    assert set(document) == set(ok) and set(document["usage"]) == set(ok["usage"]) and ok["error"] is None
    assert document["text"] == "" and document["finish_reason"] is None


@pytest.mark.parametrize(("args", "stdin", "code", "status", "words"), BEFORE_SENDING)
def test_jsonl_ends_with_an_error_event_before_sending(
    server: WorkersAIServer,
    args: tuple[str, ...],
    stdin: bytes | None,
    code: str,
    status: int,
    words: tuple[str],
) -> None:
    done = run_wai("ask", "--jsonl", *args, stdin=stdin, env=env_for(server))
    assert done.returncode == status, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["type"] == "error"
    assert_error({k: v for k, v in events[-1].items() if k != "type"}, code, status, *words)


def test_missing_credentials_are_a_json_document() -> None:
    done = run_wai("ask", "--json", "-m", MODEL, "hi")
    assert done.returncode == 2
    assert_error(one_document(done.stdout)["error"], "config", 2, "CLOUDFLARE_API_TOKEN")


def test_a_failure_after_sending_has_the_same_error_shape(server: WorkersAIServer) -> None:
    server.script(Reply.error(413, 5021, "exceeded this model context window limit (4096)."))
    done = run_wai("ask", "--json", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 3
    document = one_document(done.stdout)
    assert_error(document["error"], "window", 3, "5021")
    assert document["model"] == MODEL and document["finish_reason"] == "error"


def test_a_broken_stream_in_jsonl_ends_with_its_error(server: WorkersAIServer) -> None:
    server.script(Reply.sse([{"response": "New"}, {"response": " York"}], done=False, end="drop"))
    done = run_wai("ask", "--jsonl", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 1
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["type"] for e in events[-2:]] == ["finish", "error"]
    error = {k: v for k, v in events[-1].items() if k != "type"}
    assert_error(error, "incomplete", 1, "incomplete")
    assert events[-2]["error"] == error


def test_a_success_has_no_error(server: WorkersAIServer) -> None:
    done = run_wai("ask", "--jsonl", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 0
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["type"] == "finish" and events[-1]["error"] is None


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("tokens", "--json", "-m", "no-such-model", "hi"), id="tokens"),
        pytest.param(("logs", "--json", "--cid", "nosuchid"), id="logs"),
        pytest.param(("logs", "--json", "-n", "-1"), id="logs-bad-count"),
        pytest.param(("models", "--json", "--bogus"), id="models-unknown-option"),
    ],
)
def test_other_commands_tell_their_failures_in_json(args: tuple[str, ...]) -> None:
    done = run_wai(*args)
    assert done.returncode == 2
    document = one_document(done.stdout)
    assert set(document) == {"error"}
    assert_error(document["error"], "config" if args[0] == "tokens" else "usage", 2)


def test_without_json_stdout_stays_empty(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", "no-such-model", "hi", env=env_for(server))
    assert done.returncode == 2 and done.stdout == ""
    parsed = run_wai("ask", "--max-tokens", "0", "hi", env=env_for(server))
    assert parsed.returncode == 2 and parsed.stdout == ""


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["--json", "--jsonl"])
def test_an_interrupted_turn_tells_its_interruption_as_the_error(server: WorkersAIServer, mode: str) -> None:
    server.script(Reply.sse([{"response": "Half"}], done=False, end="hang"))
    process = subprocess.Popen(
        [WAI, "ask", mode, "-m", MODEL, "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env_for(server)},
    )
    try:
        deadline = time.monotonic() + 20
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # into the read of the reply
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    lines = out.decode().splitlines()
    if mode == "--json":
        (line,) = lines
        document = json.loads(line)
        assert document["interrupted"] is True
        assert_error(document["error"], "interrupted", 130)
    else:
        last = json.loads(lines[-1])
        assert last["type"] == "error"
        assert_error({k: v for k, v in last.items() if k != "type"}, "interrupted", 130)


def test_a_count_over_the_window_is_a_json_document_with_its_error() -> None:
    over = run_wai("tokens", "--json", "-m", MODEL, "-", stdin=("word " * 6000).encode())
    assert over.returncode == 3
    document = one_document(over.stdout)
    assert document["fits"] is False
    assert_error(document["error"], "window", 3, "2048")
    fits = one_document(run_wai("tokens", "--json", "-m", MODEL, "hi").stdout)
    assert fits["fits"] is True and fits["error"] is None

"""`wai ask` end to end: the installed command against a loopback Workers AI server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import WAI, run_wai
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer

TOKEN = "tok-CLI-SECRET-0f1e2d3c-NEVER-SHOWN"
MODEL = "@cf/meta/llama-2-7b-chat-int8"


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation(reply_tokens=12)) as running:
        yield running


def env_for(server: WorkersAIServer) -> dict[str, str]:
    return server.client_env(TOKEN)


def test_pipe_gets_the_answer_alone_with_max_tokens_always_sent(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", MODEL, "where is new york?", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert done.stdout == " ".join(f"token{i}" for i in range(1, 13)) + "\n"
    assert "\x1b" not in done.stdout
    body = server.requests[0].json
    assert body["max_tokens"] == 1800 and body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "where is new york?"}]
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_argument_then_blank_line_then_stdin(server: WorkersAIServer) -> None:
    done = run_wai(
        "ask", "-m", MODEL, "-s", "be brief", "review this", stdin=b"diff --git a b\n", env=env_for(server)
    )
    assert done.returncode == 0, done.stderr
    messages = server.requests[0].json["messages"]
    assert messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "review this\n\ndiff --git a b\n"},
    ]


def test_max_tokens_over_the_cap_is_lowered_with_a_warning(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", MODEL, "--max-tokens", "5000", "hi", env=env_for(server))
    assert done.returncode == 0
    assert server.requests[0].json["max_tokens"] == 1800
    assert "lowered to 1800" in done.stderr


def test_json_and_jsonl_carry_the_warnings_said_on_stderr(server: WorkersAIServer) -> None:
    # A script reading --json must learn of a lowered max_tokens and of a cut prompt too.
    long = "word " * 6000
    args = ("ask", "-m", MODEL, "--max-tokens", "5000", "--fit", "tail", "-")
    done = run_wai(*args, "--json", stdin=long.encode(), env=env_for(server))
    assert done.returncode == 0, done.stderr
    warnings = json.loads(done.stdout)["warnings"]
    assert any("lowered to" in w for w in warnings) and any("cut" in w for w in warnings), warnings
    assert all(w in done.stderr for w in warnings)
    streamed = run_wai(*args, "--jsonl", stdin=long.encode(), env=env_for(server))
    start = json.loads(streamed.stdout.splitlines()[0])
    assert start["type"] == "start" and start["warnings"] == warnings


def test_prompt_over_the_window_is_refused_before_sending(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", MODEL, "-", stdin=("word " * 6000).encode(), env=env_for(server))
    assert done.returncode == 3
    assert "2048" in done.stderr and "tokens" in done.stderr
    assert server.requests == []
    assert "Traceback" not in done.stderr


def test_server_window_error_is_exit_3(server: WorkersAIServer) -> None:
    server.script(Reply.error(413, 5021, "exceeded this model context window limit (4096)."))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 3
    assert "5021" in done.stderr


def test_unknown_model_on_the_server_is_one_line(server: WorkersAIServer) -> None:
    server.script(Reply.error(400, 5007, "No such model @cf/meta/llama-2-7b-chat-int8 or task"))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode in (1, 2)
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_connection_dropped_mid_stream_keeps_the_partial_text(server: WorkersAIServer) -> None:
    server.script(Reply.sse([{"response": "New"}, {"response": " York"}], done=False, end="drop"))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 1
    assert done.stdout == "New York\n"
    assert "incomplete" in done.stderr


def test_rate_limited_then_success(server: WorkersAIServer) -> None:
    server.script(Reply.error(429, 3040, "Capacity temporarily exceeded", headers={"Retry-After": "0"}))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("token1")
    assert len(server.requests) == 2


def test_json_result_shape(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", MODEL, "--json", "hi", env=env_for(server))
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["text"].startswith("token1 token2")
    assert result["model"] == MODEL and result["backend"] == "remote"
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == 12
    assert result["timings"]["first_token_s"] is not None


def test_jsonl_streams_one_object_per_event(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", MODEL, "--jsonl", "hi", env=env_for(server))
    assert done.returncode == 0
    kinds = [json.loads(line)["type"] for line in done.stdout.splitlines()]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert kinds.count("token") == 12 and "usage" in kinds


def test_output_cap_is_exit_0_with_a_warning(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", MODEL, "--max-tokens", "5", "hi", env=env_for(server))
    assert done.returncode == 0
    assert done.stdout == "token1 token2 token3 token4 token5\n"
    assert "output cap" in done.stderr


def test_debug_never_shows_the_token(server: WorkersAIServer) -> None:
    server.script(Reply.error(401, 10000, f"Authentication error for Bearer {TOKEN}"))
    done = run_wai("ask", "--debug", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode != 0
    assert TOKEN not in done.stdout + done.stderr
    assert "CLOUDFLARE_API_TOKEN" in done.stderr


@pytest.mark.e2e
def test_closed_pipe_ends_quietly() -> None:
    with WorkersAIServer(Simulation(reply_tokens=3000, token_delay=0.001)) as slow:
        env = {**env_for(slow)}
        done = subprocess.run(
            ["bash", "-c", f"'{WAI}' ask -m {MODEL} hi | head -c 20; echo \"exit=${{PIPESTATUS[0]}}\""],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )
        outcomes = slow.wait_outcomes(1, timeout=10)
    assert done.stdout.startswith("token1 token2 token3")
    assert "exit=0" in done.stdout
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr
    assert outcomes == ["client_gone"]  # wai hung up instead of reading the whole reply


def test_dry_run_needs_no_credentials_and_sends_nothing() -> None:
    done = run_wai("ask", "--dry-run", "-m", "@cf/meta/llama-2-7b-chat-fp16", "hi")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backend"] == "remote" and report["max_tokens"] == 2500
    assert "[INST]" in report["prompt"]


def test_raw_count_of_whitespace_is_not_an_empty_prompt() -> None:
    done = run_wai("tokens", "--raw", "--json", "-m", "@cf/meta/llama-2-7b-chat-fp16", stdin=b"\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tokens"] >= 1


SPLIT_EMOJI = b'data: {"response":" split \\ud83c"}\n\ndata: {"response":"\\udf89 end"}\n\ndata: [DONE]\n\n'


def test_an_emoji_split_across_two_events_reaches_every_output_whole(server: WorkersAIServer) -> None:
    server.script(*(Reply.raw_stream(SPLIT_EMOJI) for _ in range(3)))
    plain = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == " split 🎉 end\n"
    jsonl = run_wai("ask", "-m", MODEL, "--jsonl", "hi", env=env_for(server))
    assert jsonl.returncode == 0, jsonl.stderr
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert "".join(line["text"] for line in lines if line["type"] == "token") == " split 🎉 end"
    whole = run_wai("ask", "-m", MODEL, "--json", "hi", env=env_for(server))
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["text"] == " split 🎉 end"


def test_fit_tail_keeps_the_question_and_cuts_only_the_piped_text() -> None:
    piped = ("BEGINNING " + "filler text here " * 5000 + "THE END").encode()
    done = run_wai(
        "ask", "--dry-run", "--fit", "tail", "--max-tokens", "1000", "-m", "@cf/meta/llama-3.1-8b-instruct",
        "why did it fail?", stdin=piped,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    sent = report["messages"][-1]["content"]
    assert sent.startswith("why did it fail?\n\n") and sent.endswith("THE END")
    assert "BEGINNING" not in sent
    assert report["max_tokens"] == 1000  # the reply keeps the room asked for
    assert "keeping the question and the end of the piped text" in done.stderr


@pytest.mark.parametrize(
    "option",
    [("--temperature", "nan"), ("--top-p", "nan"), ("--read-timeout", "nan"), ("--connect-timeout", "inf")],
)
def test_numbers_that_are_not_numbers_are_usage_errors(option: tuple[str, str]) -> None:
    done = run_wai("ask", *option, "hi")
    assert done.returncode == 2
    assert option[0] in done.stderr and "Traceback" not in done.stderr


TOOL_CALL = {"response": "", "tool_calls": [{"name": "weather", "arguments": {"city": "NYC"}}]}


def test_a_reply_that_is_only_a_tool_call_is_told_on_stderr_and_in_json(server: WorkersAIServer) -> None:
    server.script(*(Reply.sse([TOOL_CALL]) for _ in range(3)))
    plain = run_wai("ask", "-m", MODEL, "weather in NYC?", env=env_for(server))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == ""
    assert plain.stderr.count("tool call") == 1
    assert "warning" in plain.stderr and "does not run or show" in plain.stderr
    jsonl = run_wai("ask", "-m", MODEL, "--jsonl", "weather in NYC?", env=env_for(server))
    notices = [line for line in map(json.loads, jsonl.stdout.splitlines()) if line["type"] == "notice"]
    assert len(notices) == 1 and "tool call" in notices[0]["text"]
    whole = run_wai("ask", "-m", MODEL, "--json", "weather in NYC?", env=env_for(server))
    result = json.loads(whole.stdout)
    assert result["text"] == "" and len(result["notices"]) == 1 and "tool call" in result["notices"][0]


def test_a_server_length_stop_below_max_tokens_is_not_called_the_output_cap(server: WorkersAIServer) -> None:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"delta": {"content": "Short"}}]},
        {"choices": [{"delta": {"content": " answer"}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}},
    ]
    server.script(Reply.sse(chunks))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Short answer\n"
    assert "output cap" not in done.stderr
    assert "stopped at 2 tokens on its own length limit" in done.stderr
    assert "below max_tokens 1800" in done.stderr


@pytest.mark.parametrize(
    ("base", "said"),
    [
        ("http://127.0.0.1:99999/client/v4", "has no usable port"),
        ("http://127.0.0.1:0/client/v4", "has no usable port"),
        ("http://127.0.0.1:/client/v4", "has no usable port"),
        ("http://local host/client/v4", "holds a space or a control character"),
        ("http://127.0.0.1:8787/client/v4?x=1", "has a query or fragment; give the address up to /client/v4"),
    ],
)
def test_a_base_url_no_request_could_use_is_a_config_error_before_sending(
    isolated_home: Path, base: str, said: str
) -> None:
    # Held to the same rules as a provider's base_url: else a port out of range is only
    # "connection refused" after four tries, and a query lands inside every route's path.
    env = {"CLOUDFLARE_BASE_URL": base, "CLOUDFLARE_ACCOUNT_ID": "acct123", "CLOUDFLARE_API_TOKEN": "tok-1"}
    for args in (("ask", "--json", "-m", MODEL, "hi"), ("models", "--refresh")):
        done = run_wai(*args, env=env, timeout=20)
        assert done.returncode == 2, done.stderr
        assert f"wai: error: CLOUDFLARE_BASE_URL: {base!r} {said}" in done.stderr
        assert "attempts" not in done.stderr


def test_a_password_in_the_base_url_is_refused_and_never_shown(server: WorkersAIServer) -> None:
    # httpx would send it as Basic auth in place of the API token's Bearer header.
    secret = "url-PASSWORD-5e4d3c2b"
    env = {**env_for(server), "CLOUDFLARE_BASE_URL": server.base_url.replace("//", f"//me:{secret}@")}
    done = run_wai("ask", "--debug", "-m", MODEL, "hi", env=env)
    assert done.returncode == 2
    assert "CLOUDFLARE_BASE_URL holds a user name or password" in done.stderr
    assert secret not in done.stdout + done.stderr
    assert server.requests == []


def test_a_broken_stream_is_one_line_on_stderr(server: WorkersAIServer) -> None:
    server.script(Reply.sse([{"response": "New"}, {"response": " York"}], done=False, end="drop"))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 1
    assert done.stdout == "New York\n"
    [line] = done.stderr.splitlines()
    assert "error" in line and "incomplete" in line and "what arrived is kept" in line


def _interrupt_wai(server: WorkersAIServer, wait_for: bytes) -> tuple[int, bytes, str]:
    """Start `wai ask` in a pipe, send SIGINT once `wait_for` is on stdout (or the request arrived)."""
    process = subprocess.Popen(
        [WAI, "ask", "-m", MODEL, "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env_for(server)},
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        seen = process.stdout.read(len(wait_for)) if wait_for else b""
        deadline = time.monotonic() + 20
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # into the read of the reply
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, seen + out, err.decode()


@pytest.mark.e2e
def test_ctrl_c_before_any_reply_says_the_reply_never_began(server: WorkersAIServer) -> None:
    server.script(Reply(headers={"Content-Type": "text/event-stream"}, end="hang"))
    code, out, err = _interrupt_wai(server, b"")
    assert code == 130
    assert out == b""
    assert "interrupted before the reply began" in err
    assert "incomplete" not in err


@pytest.mark.e2e
def test_ctrl_c_after_some_text_says_the_reply_is_incomplete(server: WorkersAIServer) -> None:
    server.script(Reply.sse([{"response": "Half"}], done=False, end="hang"))
    code, out, err = _interrupt_wai(server, b"Half")
    assert code == 130
    assert out == b"Half\n"
    assert "interrupted; the reply above is incomplete" in err


def test_control_characters_in_a_server_error_reach_no_output(server: WorkersAIServer) -> None:
    server.script(Reply.error(400, 9999, "bad\x1b]0;pwned\x07\x1b[2J input\x00\x9b1;1H\x7f"))
    done = run_wai("ask", "-m", MODEL, "--json", "hi", env=env_for(server))
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]["message"]
    assert "bad input" in error
    for text in (error, done.stderr):
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text), ascii(text)


def test_raw_count_of_nothing_is_the_bos_a_raw_prompt_begins_with() -> None:
    done = run_wai("tokens", "--raw", "--json", "-m", "@cf/meta/llama-2-7b-chat-fp16", "")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tokens"] == 1

"""The error codes Workers AI sends today, through the installed `wai ask` in a pipe: one line each,
the documented exit code, and retries only where another try can help."""

from __future__ import annotations

import pytest

from tests.support.cli import run_wai
from tests.support.workers_ai_server import Reply, WorkersAIServer

MODEL = "@cf/meta/llama-3.1-8b-instruct-fp8"
VLLM = (
    "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens "
    "(1000 in the messages, 8000 in the completion). Please reduce the length of the messages or completion."
)

REFUSALS = [
    # reply, exit code, words the one line must hold
    (Reply.error(429, 4006, "you have used up your daily free allocation"), 1, ["daily", "tomorrow"]),
    (Reply.error(403, 5035, "requires Workers Paid"), 2, [f"{MODEL} needs the Workers Paid plan"]),
    (Reply.error(403, 5018, "not allowed"), 2, [f"not allowed to use {MODEL}"]),
    (Reply.error(403, 3041, "not allowed"), 2, ["not allowed to use Workers AI"]),
    (Reply.error(403, 3023, "account blocked"), 2, ["blocked", "support"]),
    (Reply.openai_error(400, VLLM), 3, [f"{MODEL}'s context window is 4096 tokens"]),
    (Reply.error(400, 1000, "max_completion_tokens is too large: 9000"), 3, ["do not fit", "--max-tokens"]),
    (
        Reply.json({"object": "error", "message": VLLM, "type": "BadRequestError", "code": 400}, status=400),
        3,
        [f"{MODEL}'s context window is 4096 tokens"],
    ),
    (Reply.error(403, 9109, "Invalid access token"), 2, ["rejected the API token"]),
    # Workers AI's own ranges, as the options that set them (wai.sampling, workers_ai/sampling.py).
    (
        Reply.error(400, 5004, "Type mismatch of '/top_k'"),
        1,
        ["rejected the request's inputs", "--top-p 0.001..1", "--top-k 1..50", "--repetition-penalty 0..2"],
    ),
]


@pytest.mark.parametrize(
    ("reply", "code", "words"),
    REFUSALS,
    ids=["4006", "5035", "5018", "3041", "3023", "vllm", "vllm-2", "vllm-bare", "9109", "5004"],
)
def test_each_refusal_is_one_line_with_its_exit_code_and_is_not_retried(
    server: WorkersAIServer, reply: Reply, code: int, words: list[str]
) -> None:
    server.script(reply, Reply.sse([{"response": "never"}]))
    done = run_wai("ask", "-m", MODEL, "hello")
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wai: error: "), done.stderr
    for word in words:
        assert word in lines[0]
    assert len(server.requests) == 1
    assert server.pending == 1


@pytest.mark.parametrize(
    "first",
    [Reply.error(429, 3021, "Rate limited"), Reply.error(408, 3007, "Request timeout")],
    ids=["3021", "3007"],
)
def test_a_rate_limit_or_a_timeout_then_success_answers(server: WorkersAIServer, first: Reply) -> None:
    server.script(first, Reply.sse([{"response": "second"}, {"response": " try"}]))
    done = run_wai("ask", "-m", MODEL, "hello")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "second try\n"
    assert done.stderr == ""
    assert len(server.requests) == 2


def test_a_timeout_is_tried_twice_only(server: WorkersAIServer) -> None:
    timeout = Reply.error(408, 3007, "Request timeout")
    server.script(timeout, timeout, Reply.sse([{"response": "never"}]))
    done = run_wai("ask", "-m", MODEL, "hello")
    assert done.returncode == 1
    assert "timed out" in done.stderr and "gave up after 2 attempts" in done.stderr
    assert len(server.requests) == 2

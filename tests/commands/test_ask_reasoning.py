"""Reasoning models and today's reply shapes through the installed `wai`, in a pipe, against the
loopback server answering like a reasoning model: thinking first, then the answer."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.cli import run_wai
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer, native_chunks

REASONING_MODEL = "@cf/qwen/qwq-32b"  # reasoning = true in the built-in catalog; max_output 12000
PLAIN_MODEL = "@cf/meta/llama-2-7b-chat-int8"
THOUGHTS = " ".join(f"thought{i}" for i in range(1, 6))
ANSWER = " ".join(f"token{i}" for i in range(1, 5))


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation(thinking_tokens=5, reply_tokens=4)) as running:
        yield running


def env_for(server: WorkersAIServer) -> dict[str, str]:
    return server.client_env("tok-reasoning", account="acct")


def ask(server: WorkersAIServer, *args: str) -> tuple[int, str, str]:
    done = run_wai("ask", "-m", REASONING_MODEL, *args, env=env_for(server))
    assert "Traceback" not in done.stderr
    return done.returncode, done.stdout, done.stderr


def test_a_pipe_gets_the_answer_alone(server: WorkersAIServer) -> None:
    code, out, err = ask(server, "where is new york?")
    assert code == 0, err
    assert out == ANSWER + "\n"
    assert "thought" not in out and "thought" not in err


def test_json_has_the_thinking_beside_the_text_and_counts_it_as_output(server: WorkersAIServer) -> None:
    code, out, err = ask(server, "--json", "where is new york?")
    assert code == 0, err
    result = json.loads(out)
    assert result["text"] == ANSWER
    assert result["reasoning"] == THOUGHTS
    assert result["usage"]["completion_tokens"] == 9  # 5 thinking + 4 answer
    assert result["usage"]["reasoning_tokens"] == 5
    assert result["finish_reason"] == "stop"
    assert result["timings"]["thinking_s"] is not None


def test_jsonl_emits_reasoning_events_before_the_tokens(server: WorkersAIServer) -> None:
    code, out, err = ask(server, "--jsonl", "where is new york?")
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert kinds.index("reasoning") < kinds.index("token")
    assert "reasoning" not in kinds[kinds.index("token") :]
    assert "".join(e["text"] for e in events if e["type"] == "reasoning") == THOUGHTS
    assert "".join(e["text"] for e in events if e["type"] == "token") == ANSWER
    assert "reasoning" not in events[-1] and "text" not in events[-1]


def test_the_transcript_keeps_the_thinking_apart_and_logs_shows_it(server: WorkersAIServer) -> None:
    code, _, err = ask(server, "where is new york?")
    assert code == 0, err
    listed = json.loads(run_wai("logs", "--json").stdout)
    cid = listed[0]["id"]
    shown = run_wai("logs", "--cid", cid)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "thinking:\n  " + THOUGHTS in text
    assert text.index("thinking:") < text.index(ANSWER)  # the thinking first, then the answer
    turn = json.loads(run_wai("logs", "--cid", cid, "--json").stdout)["turns"][0]
    assert (turn["reasoning"], turn["reply"]) == (THOUGHTS, ANSWER)
    # Continuing sends the answer back, never the thinking.
    code, _, err = ask(server, "-c", "and boston?")
    assert code == 0, err
    history = server.requests[-1].json["messages"]
    assert history[:2] == [
        {"role": "user", "content": "where is new york?"},
        {"role": "assistant", "content": ANSWER},
    ]


def test_thinking_that_fills_the_cap_says_so_and_exits_0(server: WorkersAIServer) -> None:
    code, out, err = ask(server, "--max-tokens", "3", "where is new york?")
    assert code == 0
    assert out == ""
    assert (
        "wai: warning: the thinking used the whole output window (3 tokens) before the answer began; "
        "raise --max-tokens (up to 12000) or lower --reasoning-effort"
    ) in err
    assert server.requests[0].json["max_tokens"] == 3


def test_thinking_that_fills_the_cap_in_json(server: WorkersAIServer) -> None:
    code, out, _ = ask(server, "--max-tokens", "3", "--json", "hi")
    assert code == 0
    result = json.loads(out)
    assert (result["text"], result["reasoning"], result["finish_reason"]) == (
        "",
        "thought1 thought2 thought3",
        "length",
    )


def test_reasoning_effort_is_sent_to_a_reasoning_model_only(server: WorkersAIServer) -> None:
    code, _, err = ask(server, "--reasoning-effort", "low", "hi")
    assert code == 0, err
    assert server.requests[-1].json["reasoning_effort"] == "low"
    done = run_wai("ask", "-m", PLAIN_MODEL, "--reasoning-effort", "high", "hi", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert "reasoning_effort" not in server.requests[-1].json
    assert (
        f"the reasoning effort (high) is not sent: {PLAIN_MODEL} is not a reasoning model in the catalog"
        in done.stderr
    )
    bad = run_wai("ask", "-m", REASONING_MODEL, "--reasoning-effort", "max", "hi", env=env_for(server))
    assert bad.returncode == 2
    assert "--reasoning-effort" in bad.stderr


def test_models_json_marks_the_reasoning_models() -> None:
    rows = {row["id"]: row for row in json.loads(run_wai("models", "--json").stdout)["models"]}
    assert rows[REASONING_MODEL]["reasoning"] is True
    assert rows[PLAIN_MODEL]["reasoning"] is False


def test_dry_run_shows_the_effort_and_the_larger_reply_room() -> None:
    done = run_wai("ask", "-m", REASONING_MODEL, "--reasoning-effort", "high", "--dry-run", "hi")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["reasoning_effort"] == "high"
    assert plan["max_tokens"] == 12000


def test_an_empty_reply_is_asked_again_whole_then_is_exit_1(server: WorkersAIServer) -> None:
    server.script(Reply.sse([{"response": ""}]), Reply.result(""))
    done = run_wai("ask", "-m", PLAIN_MODEL, "hi", env=env_for(server))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("wai: error: the model returned an empty reply")
    assert [request.json["stream"] for request in server.requests] == [True, False]


def test_an_empty_stream_then_a_whole_answer_is_a_normal_reply(server: WorkersAIServer) -> None:
    server.script(
        Reply.sse([{"response": ""}]), Reply.result("New York", {"prompt_tokens": 4, "completion_tokens": 2})
    )
    done = run_wai("ask", "-m", PLAIN_MODEL, "hi", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "New York\n"


@pytest.mark.parametrize(("response", "shown"), [({"city": "New York"}, '{"city":"New York"}'), (42, "42")])
def test_a_json_object_or_number_response_is_written(
    server: WorkersAIServer, response: object, shown: str
) -> None:
    server.script(Reply.result(response, {"prompt_tokens": 4, "completion_tokens": 5}))
    done = run_wai("ask", "-m", PLAIN_MODEL, "--no-stream", "hi", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown + "\n"


def test_a_native_length_stop_below_max_tokens_is_the_servers_own_limit(server: WorkersAIServer) -> None:
    server.script(Reply.sse(native_chunks(["New", " York"], finish="length")))
    done = run_wai("ask", "-m", PLAIN_MODEL, "--max-tokens", "100", "hi", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "New York\n"
    assert "on its own length limit (finish_reason length), below max_tokens 100" in done.stderr


def test_a_stream_ending_after_its_finish_reason_without_done_is_whole(server: WorkersAIServer) -> None:
    server.script(Reply.sse(native_chunks(["New", " York"]), done=False))
    done = run_wai("ask", "-m", PLAIN_MODEL, "hi", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "New York\n"
    assert done.stderr == ""

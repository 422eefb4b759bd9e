"""`wai batch` against the loopback Workers AI server: order, concurrency, the shared back-off, the
daily allowance, resuming after a stop, a Ctrl-C or a kill -9, windows per record, and what it
says on stderr."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.support import pty_spawn
from tests.support.cli import WAI, run_wai
from tests.support.workers_ai_server import (
    Pause,
    RecordedRequest,
    Reply,
    Responder,
    Simulation,
    WorkersAIServer,
)

MODEL = "@cf/meta/llama-2-7b-chat-int8"


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation(echo=True)) as running:
        yield running


def env_for(server: WorkersAIServer) -> dict[str, str]:
    return server.client_env("tok-batch")


def items(count: int) -> bytes:
    return "".join(f"item {i}\n" for i in range(count)).encode()


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def answered_prompts(server: WorkersAIServer, ok: set[int]) -> list[str]:
    """The prompts of the requests the server answered 200 (by position in `server.requests`)."""
    return [server.requests[n].json["messages"][-1]["content"] for n in sorted(ok)]


def echo_after(seconds: float) -> Responder:
    """A reply to any request: "re: PROMPT", after `seconds`."""

    def reply(request: RecordedRequest) -> Reply:
        text = request.json["messages"][-1]["content"]
        usage = {"prompt_tokens": 3, "completion_tokens": 2}
        answer = Reply.sse([{"response": f"re: {text}"}, {"response": "", "usage": usage}])
        answer.parts.insert(0, Pause(seconds))
        return answer

    return reply


def later_sooner(prompts: list[str], step: float) -> Responder:
    """Answers "re: PROMPT", the later a prompt comes in `prompts` the sooner."""

    def reply(request: RecordedRequest) -> Reply:
        place = prompts.index(request.json["messages"][-1]["content"])
        return echo_after(step * (len(prompts) - place))(request)

    return reply


# Records, order, output


def test_lines_come_in_input_order_with_each_records_fields(server: WorkersAIServer) -> None:
    # Later records answer sooner: only the order of the input can put them back in line.
    prompts = ["first", "plain line", *(f"item {i}" for i in range(6))]
    server.script(*[later_sooner(prompts, 0.03)] * 8)
    stdin = b'{"id": "a", "prompt": "first"}\n\nplain line\n' + items(6)
    done = run_wai("batch", "-m", MODEL, "-j", "8", stdin=stdin, env=env_for(server))
    assert done.returncode == 0, done.stderr
    lines = lines_of(done.stdout)
    assert [line["index"] for line in lines] == list(range(8))
    assert lines[0] == {
        "index": 0,
        "id": "a",
        "text": "re: first",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "exact": True},
        "error": None,
    }
    assert lines[1]["text"] == "re: plain line" and "id" not in lines[1]
    assert [line["text"] for line in lines[2:]] == [f"re: item {i}" for i in range(6)]


def test_unordered_writes_each_line_as_it_ends(server: WorkersAIServer) -> None:
    server.script(*[later_sooner([f"item {i}" for i in range(4)], 0.15)] * 4)
    done = run_wai("batch", "-m", MODEL, "-j", "4", "--unordered", stdin=items(4), env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert [line["index"] for line in lines_of(done.stdout)] == [3, 2, 1, 0]


def test_a_template_fills_fields_and_a_missing_one_is_that_records_error(server: WorkersAIServer) -> None:
    stdin = b'{"name": "Ada", "n": 3}\n{"nom": "Bob"}\nplain\n'
    done = run_wai(
        "batch",
        "-m",
        MODEL,
        "-s",
        "be brief",
        "greet {name} x{n} {{ok}}",
        "--echo",
        stdin=stdin,
        env=env_for(server),
    )
    assert done.returncode == 1, done.stderr
    first, second, third = lines_of(done.stdout)
    assert first["text"] == "re: greet Ada x3 {ok}" and first["record"] == {"name": "Ada", "n": 3}
    assert second["error"]["code"] == "record" and "'name'" in second["error"]["message"]
    assert second["text"] == "" and second["usage"] is None and second["record"] == {"nom": "Bob"}
    assert third["error"]["code"] == "record"
    assert len(server.requests) == 1  # the records without a prompt were never sent
    assert server.requests[0].json["messages"][0] == {"role": "system", "content": "be brief"}


def test_any_field_name_is_a_placeholder_and_none_is_sent_as_it_stands(server: WorkersAIServer) -> None:
    # Keys that are no Python names were left in the prompt as written, `{a.b}` too: every record
    # sent with the literal placeholder, and the batch "succeeded".
    stdin = '{"név": "Ada", "user-name": "ada1", "0": "zero"}\n{"a": {"b": 1}}\n'.encode()
    template = 'hi {név} {user-name} {0}, as JSON {"k": 1} { spaced }'
    done = run_wai("batch", "-m", MODEL, template, stdin=stdin, env=env_for(server))
    first, second = lines_of(done.stdout)
    assert first["text"] == 're: hi Ada ada1 zero, as JSON {"k": 1} { spaced }'
    assert second["error"]["code"] == "record" and "{név}" in second["error"]["message"]
    assert done.returncode == 1 and len(server.requests) == 1
    nested = run_wai("batch", "-m", MODEL, "x {a.b}", stdin=b'{"a": {"b": 1}}\n', env=env_for(server))
    assert "a field inside another is not reached" in lines_of(nested.stdout)[0]["error"]["message"]
    assert len(server.requests) == 1


def test_a_template_that_fills_to_nothing_is_that_records_error(server: WorkersAIServer) -> None:
    stdin = b'{"q": ""}\n{"q": "  "}\n{"q": "real"}\n'
    done = run_wai("batch", "-m", MODEL, "{q}", stdin=stdin, env=env_for(server))
    assert done.returncode == 1, done.stderr
    lines = lines_of(done.stdout)
    assert [line["error"] and line["error"]["code"] for line in lines] == ["record", "record", None]
    assert "empty prompt" in lines[0]["error"]["message"]
    assert [request.json["messages"][-1]["content"] for request in server.requests] == ["real"]


def test_a_records_messages_are_sent_as_they_are(server: WorkersAIServer, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    conversation = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "again"},
    ]
    source.write_text(json.dumps({"messages": conversation}) + "\n")
    done = run_wai("batch", "-m", MODEL, "-i", str(source), env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert server.requests[0].json["messages"] == conversation
    assert lines_of(done.stdout)[0]["text"] == "re: again"


def test_lines_are_split_at_newlines_alone_and_a_byte_order_mark_is_no_text(
    server: WorkersAIServer, tmp_path: Path
) -> None:
    # A Windows editor's BOM before the first JSON object; JSON strings holding U+2028 raw (as
    # jq -c and json.dumps(ensure_ascii=False) write them); a form feed in a plain line; CRLF.
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        "\ufeff".encode()
        + b'{"id": "a", "prompt": "one"}\r\n'
        + '{"id": "b", "prompt": "two\u2028lines"}\r\n'.encode()
        + b"page\x0cbreak\r\n"
    )
    done = run_wai("batch", "-m", MODEL, "-i", str(source), env=env_for(server))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.split("\n") if line]
    assert [(line.get("id"), line["text"]) for line in lines] == [
        ("a", "re: one"),
        ("b", "re: two\u2028lines"),
        (None, "re: page\x0cbreak"),
    ]


def test_a_line_that_is_not_utf8_is_its_records_error_never_a_mangled_prompt(
    server: WorkersAIServer,
) -> None:
    stdin = b'caf\xe9 au lait\n{"prompt": "na\xefve"}\nfine\n'  # Latin-1 bytes
    done = run_wai("batch", "-m", MODEL, "--echo", stdin=stdin, env=env_for(server))
    assert done.returncode == 1, done.stderr
    first, second, third = lines_of(done.stdout)
    assert first["error"]["code"] == "record" and "byte 0xe9 at character 4" in first["error"]["message"]
    assert first["record"] == {"input": "caf\ufffd au lait"}
    assert second["error"]["code"] == "record" and third["text"] == "re: fine"
    assert [request.json["messages"][-1]["content"] for request in server.requests] == ["fine"]


def test_a_record_over_its_window_is_an_error_line_never_sent(server: WorkersAIServer) -> None:
    huge = json.dumps({"prompt": "word " * 20_000})
    stdin = b"short one\n" + huge.encode() + b"\nshort two\n"
    done = run_wai("batch", "-m", MODEL, stdin=stdin, env=env_for(server))
    assert done.returncode == 1, done.stderr
    lines = lines_of(done.stdout)
    assert lines[1]["error"]["code"] == "window" and lines[1]["text"] == ""
    assert lines[0]["error"] is None and lines[2]["error"] is None
    sent = [request.json["messages"][-1]["content"] for request in server.requests]
    assert sorted(sent) == ["short one", "short two"]


def test_in_a_pipe_stderr_is_the_summary_alone(server: WorkersAIServer) -> None:
    done = run_wai("batch", "-m", MODEL, stdin=items(5), env=env_for(server))
    assert done.returncode == 0
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("wai: batch: 5 of 5 records done, 5 ok, 0 failed")


@pytest.mark.e2e
def test_a_reader_that_goes_away_stops_the_batch_quietly(server: WorkersAIServer, tmp_path: Path) -> None:
    # `wai batch ... | head -n 1`, as `wai ask ... | head` : no error, exit 0, nothing more asked.
    server.simulation.latency = 0.05
    source = tmp_path / "in.txt"
    source.write_bytes(items(40))
    shell = f'{WAI} batch -m {MODEL} -j 1 -i {source} | head -n 1; echo "wai exit $' + '{PIPESTATUS[0]}" >&2'
    done = subprocess.run(
        ["bash", "-c", shell],
        capture_output=True,
        text=True,
        env={**os.environ, **env_for(server)},
        timeout=60,
    )
    assert lines_of(done.stdout)[0]["text"] == "re: item 0"
    assert done.stderr == "wai exit 0\n"
    assert len(server.requests) < 40


def test_nothing_piped_is_a_usage_error(server: WorkersAIServer) -> None:
    done = run_wai("batch", "--resume", "-m", MODEL, stdin=b"x\n", env=env_for(server))
    assert done.returncode == 2 and "-o FILE" in done.stderr


# Concurrency and back-off


def test_workers_are_bounded_by_jobs(server: WorkersAIServer) -> None:
    # Each reply waits until three requests are in at once: they run together (one at a time,
    # or two, the first would wait in vain and the batch fail), whatever the load on the machine.
    three_in = threading.Barrier(3)

    def when_three_are_in(request: RecordedRequest) -> Reply:
        three_in.wait(timeout=10)  # a guard against a hang; the barrier, not a delay, sets the pace
        return echo_after(0)(request)

    server.script(*[when_three_are_in] * 12)
    server.simulation.capacity = 3  # a fourth request at once would be refused 429 / 3040
    done = run_wai("batch", "-m", MODEL, "-j", "3", stdin=items(12), env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert all(line["error"] is None for line in lines_of(done.stdout))
    assert server.most_active == 3
    assert len(server.requests) == 12  # no refusal, so no retry


def test_a_429_pauses_every_worker_for_its_retry_after(server: WorkersAIServer) -> None:
    # The refusal comes back at once; the other workers' first replies take 0.3 s, so by the time
    # they end the pause is known to all.
    refusal = Reply.error(429, 3040, "Capacity temporarily exceeded", headers={"Retry-After": "1"})
    server.script(refusal, *[echo_after(0.3)] * 12)
    done = run_wai("batch", "-m", MODEL, "-j", "4", stdin=items(12), env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert all(line["error"] is None for line in lines_of(done.stdout))
    first, *rest = server.arrivals
    # The other three workers' first requests may have left before the refusal came back; after
    # it, nobody sent anything until the second the server asked for had passed, not only the
    # worker that was refused (alone, the others would have sent all eleven meanwhile).
    during = [round(t - first, 2) for t in rest if t - first < 1.0]
    assert len(during) <= 3, during
    assert len(server.arrivals) == 13  # twelve records, the refused one twice


def test_the_daily_allowance_stops_the_batch_and_resume_asks_only_the_rest(
    server: WorkersAIServer, tmp_path: Path
) -> None:
    answered: set[int] = set()
    lock = threading.Lock()

    def allowance_after_five(request: RecordedRequest) -> Reply:
        with lock:
            position = len(server.requests) - 1
            if len(answered) < 5:
                answered.add(position)
                return echo_after(0.02)(request)
        return Reply.error(429, 4006, "you have used up your daily free allocation of 10,000 neurons")

    server.script(*([allowance_after_five] * 200))
    out = tmp_path / "out.jsonl"
    done = run_wai("batch", "-m", MODEL, "-j", "2", "-o", str(out), stdin=items(20), env=env_for(server))
    assert done.returncode == 1
    assert "stopped: the daily free allocation" in done.stderr and "--resume" in done.stderr
    assert len(server.requests) <= 5 + 2  # the workers took nothing more once told
    first_run = answered_prompts(server, answered)

    server.clear_script()
    server.forget()
    resumed = run_wai(
        "batch", "-m", MODEL, "-j", "2", "-o", str(out), "--resume", stdin=items(20), env=env_for(server)
    )
    assert resumed.returncode == 0, resumed.stderr
    second_run = [request.json["messages"][-1]["content"] for request in server.requests]
    # Every record answered once, none twice: the file is what one uninterrupted run writes.
    assert sorted(first_run + second_run) == sorted(f"item {i}" for i in range(20))
    lines = lines_of(out.read_text())
    assert sorted(line["index"] for line in lines) == list(range(20))
    assert all(line["error"] is None and line["text"] == f"re: item {line['index']}" for line in lines)


def test_seeded_records_are_sampled_with_seed_plus_index(server: WorkersAIServer) -> None:
    done = run_wai(
        "batch", "-m", MODEL, "--seed", "40", "--temperature", "0.5", stdin=items(3), env=env_for(server)
    )
    assert done.returncode == 0, done.stderr
    seeds = {r.json["messages"][-1]["content"]: r.json["seed"] for r in server.requests}
    assert seeds == {"item 0": 40, "item 1": 41, "item 2": 42}


# What only a process shows: signals, a kill, a terminal


def wait_for_lines(path: Path, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never had {count} lines")


def start_batch(server: WorkersAIServer, source: Path, out: Path, *more: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [WAI, "batch", "-m", MODEL, "-j", "2", "-i", str(source), "-o", str(out), *more],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env_for(server)},
    )


def assert_whole_run(out: Path, count: int) -> None:
    lines = lines_of(out.read_text())
    assert sorted(line["index"] for line in lines) == list(range(count))
    assert all(line["error"] is None and line["text"] == f"re: item {line['index']}" for line in lines)


@pytest.mark.e2e
def test_ctrl_c_exits_130_with_whole_lines_and_resume_finishes(
    server: WorkersAIServer, tmp_path: Path
) -> None:
    server.simulation.latency = 0.2
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_bytes(items(30))
    child = start_batch(server, source, out)
    wait_for_lines(out, 4)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=15)
    assert child.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    data = out.read_bytes()
    assert data.endswith(b"\n")
    interrupted = lines_of(data.decode())
    assert 4 <= len(interrupted) < 30
    resumed = start_batch(server, source, out, "--resume")
    _, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
    assert_whole_run(out, 30)


@pytest.mark.e2e
def test_kill_9_then_resume_drops_a_cut_line_and_finishes(server: WorkersAIServer, tmp_path: Path) -> None:
    server.simulation.latency = 0.2
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_bytes(items(30))
    child = start_batch(server, source, out)
    wait_for_lines(out, 3)
    child.kill()
    child.communicate(timeout=15)
    with out.open("ab") as cut:  # as a kill in the middle of a write leaves it
        cut.write(b'{"index": 29, "text": "re: it')
    resumed = start_batch(server, source, out, "--resume")
    _, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
    assert "last line was cut off" in stderr
    assert_whole_run(out, 30)


@pytest.mark.parametrize(
    ("held", "told"),
    [
        (b"my notes\nsecond line\n", "line 1 is not a line of wai batch's output"),
        (  # the output of a longer input
            b"".join(b'{"index": %d, "id": "t-%d", "error": null}\n' % (n, n + 1) for n in range(5)),
            "line 4 answers record 3, and the input has 3 records",
        ),
        (  # the output of another input of as many records
            b'{"index": 0, "id": "t-9", "text": "x", "error": null}\n',
            "answers record 0 with the id 't-9', and the input's has 't-1'",
        ),
    ],
)
def test_resume_refuses_a_file_that_is_not_this_inputs_output_and_leaves_it_whole(
    server: WorkersAIServer, tmp_path: Path, held: bytes, told: str
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(held)
    stdin = b'{"id": "t-1", "prompt": "a"}\n{"id": "t-2", "prompt": "b"}\n{"id": "t-3", "prompt": "c"}\n'
    done = run_wai("batch", "-m", MODEL, "-o", str(out), "--resume", stdin=stdin, env=env_for(server))
    assert done.returncode == 2 and told in done.stderr, done.stderr
    assert out.read_bytes() == held
    assert server.requests == []


@pytest.mark.e2e
def test_progress_shows_on_a_terminal(server: WorkersAIServer, tmp_path: Path) -> None:
    server.simulation.latency = 0.3
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_bytes(items(8))
    child = pty_spawn.spawn(
        WAI,
        ["batch", "-m", MODEL, "-j", "2", "-i", str(source), "-o", str(out)],
        env={**os.environ, **env_for(server)},
        dimensions=(24, 120),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect(r"\d/8")  # done of total, as it goes
    child.expect("errors")
    child.expect("batch: 8 of 8 records done, 8 ok, 0 failed")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert_whole_run(out, 8)


@pytest.mark.e2e
def test_lines_to_the_terminal_each_start_a_line_of_their_own_beside_the_bar(server: WorkersAIServer) -> None:
    # stdout and stderr the same terminal: a line written while the bar is drawn was glued to the
    # bar's text, and the bar redrawn below left it there ("ETA 0:00:01{"index": 3, ...").
    server.simulation.latency = 0.2
    child = pty_spawn.spawn(
        "/bin/sh",
        ["-c", f"printf 'item %s\\n' 0 1 2 3 4 5 | {WAI} batch -m {MODEL} -j 2"],
        env={**os.environ, **env_for(server)},
        dimensions=(24, 200),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before
    assert child.exitstatus == 0 and "errors" in screen  # the bar was there
    starts = [screen[: match.start()] for match in re.finditer(r'\{"index": ', screen)]
    assert len(starts) == 6
    # Each line begins where the bar was erased (ESC [2K) or on a fresh line, never after its text.
    assert all(before.endswith(("\x1b[2K", "\n")) for before in starts), screen


# --schema: each reply held to it, its value under `json`

JSON_MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


def test_schema_records_get_their_json_and_a_breaking_one_its_error(server: WorkersAIServer) -> None:
    answers = {"Ada": {"name": "Ada", "age": 36}, "Bob": {"name": "Bob"}, "Cy": {"name": "Cy", "age": 5}}

    def by_name(request: RecordedRequest) -> Reply:
        return Reply.result(answers[request.json["messages"][-1]["content"].split()[-1]])

    server.script(*[by_name] * 3)
    stdin = b"Ada\nBob\nCy\n"
    done = run_wai(
        "batch",
        "-m",
        JSON_MODEL,
        "--schema",
        "name, age int",
        "describe {input}",
        stdin=stdin,
        env=env_for(server),
    )
    assert done.returncode == 1, done.stderr
    ada, bob, cy = lines_of(done.stdout)
    assert ada["json"] == {"name": "Ada", "age": 36} and ada["error"] is None
    assert bob["json"] is None and bob["error"]["code"] == "schema" and "'age'" in bob["error"]["message"]
    assert cy["json"] == {"name": "Cy", "age": 5}
    assert all("response_format" in request.json for request in server.requests)


def test_a_schema_the_model_cannot_hold_is_refused_before_anything_is_sent(server: WorkersAIServer) -> None:
    done = run_wai("batch", "-m", MODEL, "--schema", "name", stdin=b"x\n", env=env_for(server))
    assert done.returncode == 2 and done.stdout == ""
    assert "has no JSON mode" in done.stderr
    assert server.requests == []


# A provider's server (OpenAI-compatible): the same batch, its own back-off


def test_a_providers_model_answers_every_record(isolated_home: Path) -> None:
    from tests.support.openai_server import base_url, openai_server

    with openai_server("vllm", models={"org/m": 4096}) as provider:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(provider)}"\n', encoding="utf-8"
        )
        done = run_wai("batch", "-m", "eng:org/m", "-j", "4", "--max-tokens", "3", stdin=items(8))
        chats = [r for r in provider.requests if r.path.endswith("/chat/completions")]
    assert done.returncode == 0, done.stderr
    lines = lines_of(done.stdout)
    assert [line["index"] for line in lines] == list(range(8))
    assert all(line["text"] == "token1 token2 token3" and line["usage"]["exact"] for line in lines)
    assert sorted(r.json["messages"][-1]["content"] for r in chats) == [f"item {i}" for i in range(8)]

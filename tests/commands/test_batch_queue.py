"""`wai batch --queue` against the loopback server's batch queue: records submitted in chunks,
polled until their responses come, written as a normal batch's lines; a restart mid-poll resumed
from the side file without asking a record twice; a model without the queue refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.support import pty_spawn
from tests.support.cli import WAI, run_wai
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer

QUEUED = "@cf/meta/llama-2-7b-chat-int8"  # given async_queue by the test's own catalog
NOT_QUEUED = "@cf/meta/llama-2-7b-chat-fp16"
FAST = ("--queue-poll", "0.01")


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation(echo=True)) as running:
        yield running


@pytest.fixture
def env(server: WorkersAIServer, tmp_path: Path) -> dict[str, str]:
    catalog = tmp_path / "models.toml"
    catalog.write_text(f'[models."{QUEUED}"]\ncapabilities = ["async_queue"]\n')
    return {**server.client_env("tok-queue"), "WAI_MODELS": str(catalog)}


def items(count: int, word: str = "item") -> bytes:
    return "".join(f"{word} {i}\n" for i in range(count)).encode()


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_records_are_submitted_polled_and_written_as_a_batchs_lines(
    server: WorkersAIServer, env: dict[str, str]
) -> None:
    server.simulation.queue_polls = 2  # queued, running, then done
    done = run_wai("batch", "-m", QUEUED, "--queue", *FAST, stdin=items(4), env=env)
    assert done.returncode == 0, done.stderr
    lines = lines_of(done.stdout)
    assert lines[0] == {
        "index": 0,
        "text": "re: item 0",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 6, "completion_tokens": 1, "exact": True},
        "error": None,
    }
    assert [line["text"] for line in lines] == [f"re: item {i}" for i in range(4)]
    queue = server.simulation.queue
    assert queue.submissions == [4] and queue.polls == ["req-0001"] * 3
    submitted = server.requests[0]
    assert submitted.path.endswith("/ai/run/" + QUEUED + "?queueRequest=true")
    requests = submitted.json["requests"]
    assert [r["external_reference"] for r in requests] == ["0", "1", "2", "3"]
    assert all(r["stream"] is False and r["max_tokens"] > 0 for r in requests)
    assert server.requests[1].json == {"request_id": "req-0001"}
    assert len(server.requests) == 4  # one submit, three polls: no record asked on its own


def test_records_go_in_chunks_and_come_back_in_input_order(
    server: WorkersAIServer, env: dict[str, str]
) -> None:
    done = run_wai("batch", "-m", QUEUED, "--queue", "--queue-chunk", "2", *FAST, stdin=items(5), env=env)
    assert done.returncode == 0, done.stderr
    assert server.simulation.queue.submissions == [2, 2, 1]
    assert [line["index"] for line in lines_of(done.stdout)] == [0, 1, 2, 3, 4]
    assert sorted(server.simulation.queue.asked) == [f"item {i}" for i in range(5)]


def test_a_model_without_the_queue_is_refused_before_anything_is_sent(
    server: WorkersAIServer, env: dict[str, str]
) -> None:
    done = run_wai("batch", "-m", NOT_QUEUED, "--queue", stdin=items(2), env=env)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "async_queue" in done.stderr and NOT_QUEUED in done.stderr
    assert done.stdout == "" and server.requests == []


def test_a_record_the_queue_failed_is_its_own_error_and_resume_asks_only_it(
    server: WorkersAIServer, env: dict[str, str], tmp_path: Path
) -> None:
    server.simulation.queue_failing = "bad"
    out = tmp_path / "out.jsonl"
    stdin = b"good 0\nbad 1\ngood 2\n"
    done = run_wai("batch", "-m", QUEUED, "--queue", *FAST, "-o", str(out), stdin=stdin, env=env)
    assert done.returncode == 1
    lines = lines_of(out.read_text())
    assert [line["error"] is None for line in lines] == [True, False, True]
    assert lines[1]["error"]["code"] == "backend"
    assert "Inference failed on this input" in lines[1]["error"]["message"]
    server.simulation.queue_failing = None
    again = run_wai("batch", "-m", QUEUED, "--queue", *FAST, "-o", str(out), "--resume", stdin=stdin, env=env)
    assert again.returncode == 0, again.stderr
    assert sorted(server.simulation.queue.asked) == ["bad 1", "bad 1", "good 0", "good 2"]
    assert sorted(line["text"] for line in lines_of(out.read_text())) == [
        "re: bad 1",
        "re: good 0",
        "re: good 2",
    ]
    assert not (tmp_path / "out.jsonl.queue.json").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_a_restart_mid_poll_resumes_the_poll_and_asks_no_record_twice(
    server: WorkersAIServer, env: dict[str, str], tmp_path: Path, stop: signal.Signals
) -> None:
    server.simulation.queue_polls = 10**6  # running until the test says otherwise
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    side = tmp_path / "out.jsonl.queue.json"
    source.write_bytes(items(5))
    argv = [
        WAI,
        "batch",
        "-m",
        QUEUED,
        "--queue",
        "--queue-chunk",
        "2",
        *FAST,
        "-i",
        str(source),
        "-o",
        str(out),
    ]
    child = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 30
    while len(server.simulation.queue.polls) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(stop)
    _, stderr = child.communicate(timeout=15)
    assert child.returncode == (130 if stop == signal.SIGINT else -signal.SIGKILL), stderr
    assert json.loads(side.read_text())["pending"] == {
        "req-0001": [0, 1],
        "req-0002": [2, 3],
        "req-0003": [4],
    }
    assert out.read_text() == ""
    server.simulation.queue_polls = 0  # every queued request done at its next poll
    resumed = run_wai(
        "batch", "-m", QUEUED, "--queue", *FAST, "-i", str(source), "-o", str(out), "--resume", env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [line["text"] for line in lines_of(out.read_text())] == [f"re: item {i}" for i in range(5)]
    queue = server.simulation.queue
    assert queue.submissions == [2, 2, 1] and sorted(queue.asked) == [f"item {i}" for i in range(5)]
    assert not side.exists()


def test_an_id_the_queue_no_longer_knows_fails_its_records_and_the_next_resume_asks_them(
    server: WorkersAIServer, env: dict[str, str], tmp_path: Path
) -> None:
    out, side = tmp_path / "out.jsonl", tmp_path / "out.jsonl.queue.json"
    out.write_text("")
    side.write_text(json.dumps({"model": QUEUED, "pending": {"req-gone": [0, 1]}}))
    argv = ("batch", "-m", QUEUED, "--queue", *FAST, "-o", str(out), "--resume")
    lost = run_wai(*argv, stdin=items(3), env=env)
    assert lost.returncode == 1
    lines = lines_of(out.read_text())
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert [line["error"] is None for line in lines] == [False, False, True]
    assert "req-gone not found" in lines[0]["error"]["message"]
    assert server.simulation.queue.asked == ["item 2"]  # the records of the lost id were not asked
    again = run_wai(*argv, stdin=items(3), env=env)
    assert again.returncode == 0, again.stderr
    assert sorted(server.simulation.queue.asked) == ["item 0", "item 1", "item 2"]
    assert not side.exists()


def test_the_daily_allowance_at_submit_stops_the_batch(server: WorkersAIServer, env: dict[str, str]) -> None:
    server.script(Reply.error(429, 4006, "you have used up your daily free allocation of 10,000 neurons"))
    done = run_wai("batch", "-m", QUEUED, "--queue", "--queue-chunk", "2", *FAST, stdin=items(4), env=env)
    assert done.returncode == 1
    assert "stopped" in done.stderr and "--resume" in done.stderr
    assert server.simulation.queue.submissions == []  # the second chunk was never sent
    assert len(server.requests) == 1


def test_a_new_run_drops_an_earlier_runs_side_file(
    server: WorkersAIServer, env: dict[str, str], tmp_path: Path
) -> None:
    out, side = tmp_path / "out.jsonl", tmp_path / "out.jsonl.queue.json"
    side.write_text(json.dumps({"model": QUEUED, "pending": {"req-old": [0]}}))
    server.script(Reply.error(429, 4006, "you have used up your daily free allocation of 10,000 neurons"))
    argv = ("batch", "-m", QUEUED, "--queue", *FAST, "-o", str(out))
    assert run_wai(*argv, stdin=items(2), env=env).returncode == 1
    resumed = run_wai(*argv, "--resume", stdin=items(2), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "req-old" not in server.simulation.queue.polls
    assert [line["text"] for line in lines_of(out.read_text())] == ["re: item 0", "re: item 1"]


def test_chunks_hold_at_most_n_records_and_stay_under_the_payload_limit() -> None:
    from wai.commands.batch.queued import chunked

    sized = [(0, 40), (1, 40), (2, 30), (3, 200), (4, 10), (5, 10), (6, 10)]
    assert list(chunked(sized, records=3, payload=100)) == [
        ([0, 1], []),  # a third would pass 100 bytes
        ([2, 4, 5], [3]),  # 3 is over the limit alone: never sent, its own error
        ([6], []),
    ]
    assert list(chunked([(0, 500)], records=10, payload=100)) == [([], [0])]


@pytest.mark.e2e
def test_a_terminal_shows_what_the_queue_is_waiting_for(
    server: WorkersAIServer, env: dict[str, str], tmp_path: Path
) -> None:
    server.simulation.queue_polls = 3
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_bytes(items(3))
    child = pty_spawn.spawn(
        WAI,
        ["batch", "-m", QUEUED, "--queue", "--queue-poll", "0.3", "-i", str(source), "-o", str(out)],
        env={**os.environ, **env},
        dimensions=(24, 160),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect("1 queued request to poll, next in")
    child.expect("batch: 3 of 3 records done, 3 ok, 0 failed")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert len(lines_of(out.read_text())) == 3

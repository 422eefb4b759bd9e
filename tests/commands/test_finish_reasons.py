"""A server's own reason for ending a reply early (its content filter, an abort) is said, not taken
for the model's own stop: the reply's text cannot show that it was cut, so a warning does, in
stderr and among `--json`'s notices; the text that arrived is still the answer, exit 0. The same
for a stream that held events wai could not read: what they held is not in the reply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.openai_server import base_url, openai_server
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer, openai_chunks

MODEL = "@cf/meta/llama-3.1-8b-instruct-fp8"
CUT = [
    pytest.param("content_filter", "its content filter stopped it", id="content_filter"),
    pytest.param("abort", "not the model's own stop", id="abort"),
]


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation()) as running:
        yield running


@pytest.mark.parametrize(("finish", "why"), CUT)
def test_workers_ai_ending_a_reply_for_its_own_reason_is_warned_of(
    server: WorkersAIServer, finish: str, why: str
) -> None:
    server.script(Reply.sse([{"response": "Hel"}, {"response": "lo", "finish_reason": finish}]))
    env = server.client_env("tok-finish-0123")
    done = run_wai("ask", "--json", "-m", MODEL, "hi", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    warning = f"Workers AI ended the reply with finish_reason '{finish}' ({why}): the reply may not be whole"
    assert result["text"] == "Hello"
    assert warning in result["notices"] and f"wai: warning: {warning}" in done.stderr


@pytest.mark.parametrize(("finish", "why"), CUT)
def test_a_provider_ending_a_reply_for_its_own_reason_is_warned_of(
    isolated_home: Path, finish: str, why: str
) -> None:
    reply = Reply.sse(openai_chunks([], ["Hel", "lo"], finish=finish))
    with openai_server("plain", models={"org/m": 4096}, routes={"POST /v1/chat/completions": reply}) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\ntokenizer = "none"\n',
            encoding="utf-8",
        )
        done = run_wai("ask", "-m", "eng:org/m", "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello\n"
    assert f"wai: warning: eng ended the reply with finish_reason '{finish}' ({why})" in done.stderr


@pytest.mark.parametrize("finish", ["stop", "eos_token", "tool_calls"])
def test_a_natural_end_says_nothing(server: WorkersAIServer, finish: str) -> None:
    server.script(Reply.sse([{"response": "Hello", "finish_reason": finish}]))
    env = server.client_env("tok-finish-0123")
    done = run_wai("ask", "-m", MODEL, "hi", env=env)
    assert done.returncode == 0 and "finish_reason" not in done.stderr


@pytest.mark.parametrize("unreadable", ['{"response": "lo', "<html>busy</html>"])
def test_events_wai_cannot_read_are_warned_of_not_dropped_in_silence(
    server: WorkersAIServer, unreadable: str
) -> None:
    server.script(Reply.sse([{"response": "Hel"}, unreadable, "", {"response": " there"}]))
    env = server.client_env("tok-finish-0123")
    done = run_wai("ask", "--json", "-m", MODEL, "hi", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["text"] == "Hel there"
    warning = "Workers AI sent 1 event wai could not read (not JSON): the reply may be missing what it held"
    assert any(notice.startswith(warning) for notice in result["notices"])  # the empty one is no event
    assert f"wai: warning: {warning}" in done.stderr

"""`wai logs`, and what survives a `kill -9` in the middle of a reply."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.support.chat_terminal import expect_prompt, spawn_chat
from tests.support.cli import run_wai
from tests.support.workers_ai_server import Reply, WorkersAIServer

FP16 = "@cf/meta/llama-2-7b-chat-fp16"


def logs(*args: str) -> tuple[int, str, str]:
    """`wai logs ARGS`."""
    done = run_wai("logs", *args, timeout=30)
    return done.returncode, done.stdout, done.stderr


def logs_json(*args: str) -> Any:
    code, out, err = logs(*args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.e2e
def test_kill_9_mid_reply_loses_only_the_reply_in_flight(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    child = spawn_chat("-m", FP16)
    for question in ("first question", "second question"):
        expect_prompt(child, "llama-2-7b-chat-fp16")
        child.send(question + "\r")
        child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    slow = [{"response": f" slow{n}"} for n in range(1, 200)]
    server.script(Reply.sse(slow, pause=0.05))
    child.send("third question\r")
    child.expect("slow5")
    os.kill(child.pid, signal.SIGKILL)
    child.expect(pexpect.EOF)
    child.close()
    assert child.signalstatus == signal.SIGKILL

    listed = logs_json()
    assert len(listed) == 1 and listed[0]["turns"] == 2
    shown = logs_json("--cid", listed[0]["id"])
    turns = shown["turns"]
    assert [t["prompt"] for t in turns] == ["first question", "second question"]
    assert all(t["reply"].endswith("token8") and t["finish_reason"] == "stop" for t in turns)
    assert all(t["completion_tokens"] == 8 and t["first_token_s"] is not None for t in turns)

    db = sqlite3.connect(isolated_home / "logs.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


@pytest.mark.e2e
def test_logs_lists_recent_conversations_and_shows_one(server: WorkersAIServer) -> None:
    child = spawn_chat("-m", FP16)
    for line in ("alpha", "/clear", "beta"):
        expect_prompt(child, "llama-2-7b-chat-fp16")
        child.send(line + "\r")
        child.expect("token8" if line != "/clear" else "new conversation")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("\x04")
    child.expect(pexpect.EOF)
    listed = logs_json()
    assert [c["first_prompt"] for c in listed] == ["beta", "alpha"]
    assert [c["first_prompt"] for c in logs_json("-n", "1")] == ["beta"]
    code, out, _ = logs()
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(listed[0]["id"]) and "beta" in lines[0]
    code, out, _ = logs("--cid", listed[1]["id"][:12])
    assert "> alpha" in out and "token8" in out and "llama-2-7b-chat-fp16, remote" in out


def test_logs_with_an_unknown_id_is_a_usage_error(server: WorkersAIServer) -> None:
    logs_json()  # nothing logged: an empty list
    code, _, err = logs("--cid", "nothing")
    assert code == 2 and "no conversation" in err and "Traceback" not in err


def _ask(*args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_wai("ask", *args, stdin=None if input_text is None else input_text.encode(), timeout=30)


def test_ask_is_logged_and_continues_a_conversation(server: WorkersAIServer) -> None:
    first = _ask("-m", FP16, "-s", "be terse", "remember 42")
    assert first.returncode == 0, first.stderr
    again = _ask("-c", "what number?")
    assert again.returncode == 0, again.stderr
    assert server.requests[1].model == FP16  # the conversation's model
    assert [(m["role"], m["content"]) for m in server.requests[1].json["messages"]] == [
        ("system", "be terse"),
        ("user", "remember 42"),
        ("assistant", first.stdout.strip()),
        ("user", "what number?"),
    ]
    assert _ask("--no-log", "-c", "not kept").returncode == 0
    listed = logs_json()
    assert [(c["source"], c["turns"]) for c in listed] == [("ask", 2)]
    by_id = _ask("--cid", listed[0]["id"][:10], "and then?")
    assert by_id.returncode == 0, by_id.stderr
    assert len(server.requests[3].json["messages"]) == 6


def test_every_line_of_a_logged_prompt_is_quoted(server: WorkersAIServer) -> None:
    done = _ask("-m", FP16, "-", input_text="first line\nsecond line\n\n    indented")
    assert done.returncode == 0, done.stderr
    code, out, _ = logs("--cid", logs_json()[0]["id"])
    assert code == 0
    assert "> first line\n> second line\n>\n>     indented\n" in out


def test_a_logs_db_that_is_a_folder_is_one_line_saying_so(isolated_home: Path) -> None:
    (isolated_home / "logs.db").mkdir()
    for args in (("logs",), ("logs", "--cid", "01abc"), ("ask", "-c", "--no-stdin", "hi")):
        done = run_wai(*args)
        assert done.returncode == 2
        # Not a warning that it is read without writing, then an error that nothing is there.
        assert done.stderr == (
            f"wai: error: {isolated_home / 'logs.db'} is a folder, not a transcript database "
            "(move it aside; wai starts a new one)\n"
        ), args
    as_json = run_wai("logs", "--json")
    assert json.loads(as_json.stdout)["error"]["exit_status"] == 2


def test_a_count_larger_than_sqlite_holds_lists_them_all(isolated_home: Path) -> None:
    from wai.store.database import Store, TurnData, db_path

    with Store(db_path()) as store:
        for cid in ("01first", "01second"):
            store.add_turn(cid, TurnData(prompt="q", reply="a", model="m", backend="remote"), source="ask")
    huge = str(2**64)
    for args in (
        ("logs", "-n", huge),
        ("logs", "--json", "-n", huge),
        ("logs", "--cid", "01first", "-n", huge),
    ):
        done = run_wai(*args)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    listed = json.loads(run_wai("logs", "--json", "-n", huge).stdout)
    assert sorted(row["id"] for row in listed) == ["01first", "01second"]

"""Escape sequences in stored or received text never reach a terminal, outside the panel too:
`wai logs`, `wai logs --cid`, `/history` and `/budget` in `wai chat`, plain replies on a dumb
terminal, JSON, names from a catalog. Into a pipe the bytes stay as they were."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from tests.render.terminal import environment
from tests.support import pty_spawn
from tests.support.chat_terminal import expect_prompt, leave, spawn_chat
from tests.support.cli import WAI, run_wai
from tests.support.workers_ai_server import Reply, WorkersAIServer

MODEL = "@cf/meta/llama-2-7b-chat-fp16"
TITLE = "\x1b]0;pwned-title\x07"
CLIPBOARD = "\x1b]52;c;Y2xpcGJvYXJk\x1b\\"
CLEAR = "\x1b[2J"
CSI_8BIT = "\x9b2J"  # the same clear screen, as one C1 character
HOSTILE_PROMPT = f"question {TITLE}{CLEAR} end"
HOSTILE_REPLY = ["safe ", TITLE, CLIPBOARD, CLEAR, CSI_8BIT, "text\n"]
# Sequences that would act on a terminal; none of them may appear in what a terminal receives.
ACTIVE = ("\x1b]0;", "\x1b]52;", "\x1b[2J", "\x9b")


def stream(pieces: list[str]) -> Reply:
    events: list[str | dict[str, object]] = [{"response": piece} for piece in pieces]
    events.append({"response": "", "usage": {"prompt_tokens": 20, "completion_tokens": len(pieces)}})
    return Reply.sse(events)


def on_terminal(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`wai ARGS` on a pseudo-terminal: its exit status and everything it wrote there."""
    child = pty_spawn.spawn(
        WAI,
        list(args),
        env=environment({"WAI_HOME": os.environ["WAI_HOME"], **(env or {})}),
        dimensions=(40, 120),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect(pexpect.EOF)
    raw = child.before or ""
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else -1), raw


def assert_inert(raw: str) -> None:
    for sequence in ACTIVE:
        assert sequence not in raw, f"{sequence!r} reached the terminal"


def log_a_hostile_turn(server: WorkersAIServer) -> str:
    """One `wai ask` turn whose prompt and reply both hold escape sequences; its conversation id."""
    server.script(stream(HOSTILE_REPLY))
    done = run_wai("ask", "-m", MODEL, HOSTILE_PROMPT)
    assert done.returncode == 0, done.stderr
    listed = json.loads(run_wai("logs", "--json").stdout)
    return str(listed[0]["id"])


@pytest.mark.e2e
def test_wai_logs_shows_stored_text_without_its_escape_sequences(server: WorkersAIServer) -> None:
    cid = log_a_hostile_turn(server)
    code, raw = on_terminal("logs")
    assert code == 0
    assert_inert(raw)
    assert "question" in raw and "end" in raw  # the text itself is still shown
    code, raw = on_terminal("logs", "--cid", cid)
    assert code == 0
    assert_inert(raw)
    assert "safe" in raw and "text" in raw
    code, raw = on_terminal("logs", "--cid", cid, "--json")
    assert code == 0
    assert_inert(raw)
    assert "\\u009b2J" in raw  # the JSON says what was stored, escaped


def test_into_a_pipe_stored_text_stays_byte_for_byte(server: WorkersAIServer) -> None:
    cid = log_a_hostile_turn(server)
    shown = run_wai("logs", "--cid", cid)
    assert shown.returncode == 0
    assert HOSTILE_PROMPT in shown.stdout
    assert "".join(HOSTILE_REPLY) in shown.stdout
    assert json.loads(run_wai("logs", "--cid", cid, "--json").stdout)["turns"][0]["reply"] == "".join(
        HOSTILE_REPLY
    )


@pytest.mark.e2e
def test_ask_on_a_dumb_terminal_and_as_json_on_a_terminal(server: WorkersAIServer) -> None:
    server.script(stream(HOSTILE_REPLY))
    code, raw = on_terminal("ask", "-m", MODEL, "hi", env={"TERM": "dumb"})
    assert code == 0
    assert_inert(raw)
    assert "safe" in raw and "text" in raw
    server.script(stream(HOSTILE_REPLY))
    code, raw = on_terminal("ask", "-m", MODEL, "--json", "hi")
    assert code == 0
    assert_inert(raw)
    assert json.loads(raw)["text"] == "".join(HOSTILE_REPLY)  # escaped, not lost


@pytest.mark.e2e
def test_chat_history_and_budget_show_a_continued_conversation_as_text(server: WorkersAIServer) -> None:
    log_a_hostile_turn(server)
    child = spawn_chat("-c")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("/history\r")
    child.expect("question")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("/budget\r")
    child.expect("turn  1")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    history = (child.before or "") + (child.after or "")
    assert leave(child) == 0
    assert_inert(history)


@pytest.mark.e2e
def test_names_from_a_catalog_are_shown_as_text(isolated_home: Path) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."evil-model"]\ncontext_window = 1000\nmax_output = 100\n'
        'precision = "q8\\u001b]0;pwned-title\\u0007\\u001b[2J"\n',
        encoding="utf-8",
    )
    code, raw = on_terminal("models")
    assert code == 0, raw
    assert_inert(raw)
    assert "evil-model" in raw
    # An id with a control character is refused; the refusal itself quotes it as text.
    (isolated_home / "models.toml").write_text(
        '[models."evil\\u001b]0;pwned-title\\u0007"]\ncontext_window = 1000\nmax_output = 100\n',
        encoding="utf-8",
    )
    code, raw = on_terminal("models")
    assert code == 2
    assert "control character" in raw
    assert_inert(raw)


@pytest.mark.e2e
def test_an_error_line_quoting_a_server_is_text(server: WorkersAIServer) -> None:
    server.script(Reply.error(400, 5006, f"bad input {TITLE}{CLEAR}"))
    child = pty_spawn.spawn(
        sys.executable,
        ["-m", "wai", "ask", "-m", MODEL, "hi"],
        env=environment({"WAI_HOME": os.environ["WAI_HOME"]}),
        encoding="utf-8",
        codec_errors="replace",
        timeout=30,
    )
    child.expect(pexpect.EOF)
    raw = child.before or ""
    child.close()
    assert child.exitstatus != 0
    assert "bad input" in raw
    assert_inert(raw)


# Every Bidi_Control character: each reorders what follows it on screen (a reply that reads one
# way and says another), so a terminal shows it as its escape, as a log line does.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
BIDI_REPLY = ["access ", "\u202e", "denied", "\u202c", " here ", BIDI_CONTROLS, " end\n"]


def assert_bidi_shown_escaped(raw: str) -> None:
    assert not any(c in raw for c in BIDI_CONTROLS), "a bidi control reached the terminal"
    assert "\\u202e" in raw and "\\u2066" in raw and "\\u061c" in raw and "\\u200f" in raw


@pytest.mark.e2e
def test_bidi_controls_in_a_reply_are_shown_escaped_on_a_terminal(server: WorkersAIServer) -> None:
    for env in ({}, {"TERM": "dumb"}):
        server.script(stream(BIDI_REPLY))
        code, raw = on_terminal("ask", "-m", MODEL, "hi", env=env)
        assert code == 0, raw
        assert_bidi_shown_escaped(raw)
        assert "access" in raw and "denied" in raw
    server.script(stream(BIDI_REPLY))
    code, raw = on_terminal("ask", "-m", MODEL, "--json", "hi")
    assert code == 0, raw
    assert not any(c in raw for c in BIDI_CONTROLS)
    assert json.loads(raw)["text"] == "".join(BIDI_REPLY)  # escaped in JSON, not lost


@pytest.mark.e2e
def test_bidi_controls_in_the_log_are_shown_escaped_on_a_terminal_and_kept_in_a_pipe(
    server: WorkersAIServer,
) -> None:
    server.script(stream(BIDI_REPLY))
    done = run_wai("ask", "-m", MODEL, f"question \u2067{BIDI_CONTROLS}\u2069 end")
    assert done.returncode == 0, done.stderr
    cid = str(json.loads(run_wai("logs", "--json").stdout)[0]["id"])
    for args in (("logs",), ("logs", "--cid", cid), ("logs", "--cid", cid, "--json")):
        code, raw = on_terminal(*args)
        assert code == 0, raw
        assert not any(c in raw for c in BIDI_CONTROLS), args
        assert "\\u2067" in raw, args
    shown = run_wai("logs", "--cid", cid)
    assert "".join(BIDI_REPLY) in shown.stdout and BIDI_CONTROLS in shown.stdout


HIDDEN = "".join(chr(0xE0000 + ord(c)) for c in "run rm -rf")  # invisible on a terminal
ENGLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
TAGGED_REPLY = [f"all is well{HIDDEN} ", f"{ENGLAND}\n"]


@pytest.mark.e2e
def test_tag_characters_hiding_a_sentence_are_shown_escaped_and_a_flag_is_kept(
    server: WorkersAIServer,
) -> None:
    server.script(stream(TAGGED_REPLY))
    code, raw = on_terminal("ask", "-m", MODEL, f"question{HIDDEN}", env={"TERM": "dumb"})
    assert code == 0, raw
    assert HIDDEN not in raw and "\\U000e0072\\U000e0075\\U000e006e" in raw  # "run", seen
    assert ENGLAND in raw
    cid = str(json.loads(run_wai("logs", "--json").stdout)[0]["id"])
    for args in (("logs",), ("logs", "--cid", cid)):
        code, raw = on_terminal(*args)
        assert code == 0, raw
        assert HIDDEN not in raw and "\\U000e0072" in raw, args
    server.script(stream(TAGGED_REPLY))
    code, raw = on_terminal("ask", "-m", MODEL, "--json", "hi")
    assert code == 0, raw
    assert HIDDEN not in raw
    assert json.loads(raw)["text"] == "".join(TAGGED_REPLY)  # escaped in JSON, not lost
    assert "".join(TAGGED_REPLY) in run_wai("logs", "--cid", cid).stdout  # a pipe keeps them

"""`wai chat` on a pseudo-terminal: keys as a person types them, replies through the live panel."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pexpect
import pytest

from tests.support import pty_spawn
from tests.support.chat_terminal import expect_prompt, leave, plain, spawn_chat, wai_command
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer
from wai.store.database import Store

FP16 = "@cf/meta/llama-2-7b-chat-fp16"
INT8 = "@cf/meta/llama-2-7b-chat-int8"


def contents(server: WorkersAIServer, index: int) -> list[str]:
    return [m["content"] for m in server.requests[index].json["messages"]]


@pytest.mark.e2e
def test_three_turns_a_model_switch_and_tab_completion(server: WorkersAIServer) -> None:
    child = spawn_chat("-m", FP16)
    assert expect_prompt(child, "llama-2-7b-chat-fp16") == 0
    child.send("where is new york?\r")
    child.expect("token8")
    used = expect_prompt(child, "llama-2-7b-chat-fp16")
    assert used > 0  # the prompt counts the conversation against the window
    child.send("/mod\tllama-2-int8\r")  # Tab completes to "/model "
    child.expect(f"{INT8} on remote")
    assert expect_prompt(child, "llama-2-7b-chat-int8") > 0
    child.send("and paris?\r")
    child.expect("token8")
    grown = expect_prompt(child, "llama-2-7b-chat-int8")
    child.send("and rome?\r")
    child.expect("token8")
    assert expect_prompt(child, "llama-2-7b-chat-int8") > grown
    child.send("/bud\t\r")
    child.expect(r"input\s+~?\d+ of 2048 tokens")
    expect_prompt(child, "llama-2-7b-chat-int8")
    assert leave(child) == 0
    assert [r.model for r in server.requests] == [FP16, INT8, INT8]
    assert contents(server, 2)[::2] == ["where is new york?", "and paris?", "and rome?"]


@pytest.mark.e2e
def test_ctrl_c_stops_a_reply_and_the_conversation_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    with WorkersAIServer(Simulation(reply_tokens=60, token_delay=0.05)) as server:
        monkeypatch.setenv("CLOUDFLARE_BASE_URL", server.base_url)
        monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "account-1")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "token-1")
        child = spawn_chat("-m", FP16)
        expect_prompt(child, "llama-2-7b-chat-fp16")
        child.send("tell me a long story\r")
        child.expect("token4")
        child.sendintr()
        child.expect("interrupted")
        expect_prompt(child, "llama-2-7b-chat-fp16")
        # Ctrl-C at the prompt clears the line, and does not leave.
        child.send("half-typed line")
        child.sendintr()
        expect_prompt(child, "llama-2-7b-chat-fp16")
        child.send("go on\r")
        child.expect("token10")
        child.sendintr()
        expect_prompt(child, "llama-2-7b-chat-fp16")
        assert leave(child, ("/exit\r",)) == 0
        assert server.wait_outcomes(2)[0] == "client_gone"  # the first stream was really stopped
    second = contents(server, 1)
    assert second[0] == "tell me a long story"
    assert second[1].startswith("token1 token2 token3 token4") and "token60" not in second[1]
    assert second[2] == "go on"
    with Store.open_default() as store:
        cid = store.latest_conversation_id()
        assert cid is not None
        turns = store.turns(cid)
    assert [(t.data.prompt, t.data.interrupted) for t in turns] == [
        ("tell me a long story", True),
        ("go on", True),
    ]


@pytest.mark.e2e
def test_history_is_recalled_after_a_restart(server: WorkersAIServer) -> None:
    child = spawn_chat("-m", FP16)
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("the first thing I asked\r")
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("something else\r")
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert leave(child) == 0

    child = spawn_chat("-m", FP16)
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("\x1b[A\x1b[A\r")  # up twice: the first thing asked
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("\x12else")  # Ctrl-R: search the history
    child.expect("else")
    child.send("\r")  # take the match
    child.send("\r")  # and send it
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert leave(child) == 0
    assert contents(server, 2) == ["the first thing I asked"]
    assert contents(server, 3)[-1] == "something else"


@pytest.mark.e2e
def test_alt_enter_and_a_paste_keep_newlines_in_one_message(server: WorkersAIServer) -> None:
    child = spawn_chat("-m", FP16, "--vi")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("line one\x1b\rline two\r")  # Alt-Enter arrives as Esc, CR
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("\x1b[200~pasted one\npasted two\n\x1b[201~\r")  # a bracketed paste, then Enter
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert leave(child) == 0
    assert contents(server, 0) == ["line one\nline two"]
    assert contents(server, 1)[-1] == "pasted one\npasted two\n"


@pytest.mark.e2e
def test_a_conversation_that_outgrows_a_small_window_drops_its_oldest_turn(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."@cf/test/tiny"]\ncontext_window = 150\nmax_output = 20\ntotal_context = 170\n',
        encoding="utf-8",
    )
    child = spawn_chat("-m", "@cf/test/tiny")
    seen = ""
    for n in range(1, 5):
        expect_prompt(child, "tiny")
        child.send(f"question {n} " + "padding " * 8 + "\r")
        child.expect("token8")
        seen += child.before
    assert "dropped the 2 oldest messages (1 turn)" in plain(seen)
    expect_prompt(child, "tiny")
    child.send("word " * 300 + "\r")
    child.expect(r"accepts at most 150 input tokens")
    expect_prompt(child, "tiny")
    assert leave(child) == 0
    assert len(server.requests) == 4
    assert not any("question 1 " in c for c in contents(server, 3))


@pytest.mark.e2e
def test_three_turns_with_a_local_model(tmp_path: Path) -> None:
    from tests.support.tiny_gguf import build_tiny_llama

    model = build_tiny_llama(tmp_path / "tiny-chat.gguf", ftype="f16", script="Hello from a tiny model.")
    child = spawn_chat("-m", str(model.path), timeout=60)
    for question in ("hi", "again", "once more"):
        expect_prompt(child, "tiny-chat.gguf")
        child.send(question + "\r")
        child.expect("tiny model")
    expect_prompt(child, "tiny-chat.gguf")
    assert leave(child) == 0
    with Store.open_default() as store:
        cid = store.latest_conversation_id()
        assert cid is not None
        turns = store.turns(cid)
    assert [t.data.reply for t in turns] == ["Hello from a tiny model."] * 3
    assert [t.data.backend for t in turns] == ["local"] * 3
    assert turns[0].data.load_s is not None
    assert turns[1].data.load_s is None  # the model stayed loaded
    assert json.dumps([t.as_dict() for t in turns])  # every field serialisable


@pytest.mark.e2e
def test_unknown_command_on_a_terminal(server: WorkersAIServer) -> None:
    child = spawn_chat("-m", FP16)
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("/frobnicate\r")
    child.expect("unknown command /frobnicate")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert leave(child) == 0
    assert server.requests == []
    assert "Traceback" not in plain(child.before or "")


@pytest.mark.e2e
def test_a_message_interrupted_before_its_reply_returns_to_the_prompt(server: WorkersAIServer) -> None:
    server.script(Reply(headers={"Content-Type": "text/event-stream"}, end="hang"))  # no token ever
    child = spawn_chat("-m", FP16, "--read-timeout", "30")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("a question worth keeping\r")
    deadline = time.monotonic() + 10
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    child.sendintr()
    child.expect("interrupted")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.expect("a question worth keeping")  # back at the prompt, to send again or edit
    child.send("\r")
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert leave(child, ("/exit\r",)) == 0
    assert contents(server, 1)[0] == "a question worth keeping"


@pytest.mark.e2e
def test_save_never_overwrites_unless_asked_and_set_shows_the_cap_it_uses(
    server: WorkersAIServer, tmp_path: Path
) -> None:
    target = tmp_path / "talk.md"
    target.write_text("keep me\n", encoding="utf-8")
    child = spawn_chat("-m", FP16)
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send(f"/save {target}\r")
    child.expect("already exists; nothing written")
    child.expect(re.escape(f"(/save! {target} replaces it)"))
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert target.read_text(encoding="utf-8") == "keep me\n"
    child.send(f"/save! {target}\r")
    child.expect("saved 0 turns")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert target.read_text(encoding="utf-8").startswith("# Conversation")

    child.send("/set max_tokens 999999\r")
    child.expect("stops at 2500 tokens per reply: max_tokens set to 2500")
    child.expect("seed default, max_tokens 2500")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    child.send("hi\r")
    child.expect("token8")
    expect_prompt(child, "llama-2-7b-chat-fp16")
    assert leave(child) == 0
    assert server.requests[-1].json["max_tokens"] == 2500


@pytest.mark.e2e
def test_chat_needs_a_terminal_on_stdout_too(server: WorkersAIServer, tmp_path: Path) -> None:
    wai = wai_command("chat")
    for redirect in (f'> "{tmp_path / "log"}"', "| cat"):
        script = f'{{ {" ".join(wai)} -m {FP16}; echo "status=$?" >&2; }} {redirect}'
        child = pty_spawn.spawn("sh", ["-c", script], encoding="utf-8", timeout=30)
        child.expect(pexpect.EOF)
        output = plain(child.before or "")
        assert "wai: error: wai chat needs a terminal on stdout (for a plain transcript use /save" in output
        assert "status=2" in output
    assert (tmp_path / "log").read_text() == ""  # no prompt redraws written into the file


@pytest.mark.e2e
def test_color_never_draws_the_prompt_and_its_menu_without_styles(server: WorkersAIServer) -> None:
    for args, env in ((("--color", "never"), {}), ((), {"NO_COLOR": "1"})):
        child = spawn_chat("-m", FP16, *args, env=env)
        seen = io.StringIO()
        child.logfile_read = seen
        expect_prompt(child, "llama-2-7b-chat-fp16")
        child.send("/bu")  # the completion menu opens
        child.expect("/budget")
        child.send("\x15")  # Ctrl-U: an empty line again
        assert leave(child) == 0
        styles = set(re.findall(r"\x1b\[([0-9;]*)m", seen.getvalue()))
        # Resets only, and reverse video (how a selected completion shows).
        assert all(set(style.split(";")) <= {"", "0", "7"} for style in styles), styles

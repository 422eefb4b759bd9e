"""`wai chat` driven in-process through prompt-toolkit's pipe input, against the loopback Workers AI server.

The same REPL loop, slash commands and transcripts as on a terminal; only the keyboard and screen
are replaced (replies go to a plain sink). tests/commands/chat/test_repl_terminal.py drives the
real thing on a pseudo-terminal.
"""

from __future__ import annotations

import io
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from tests.conftest import LOOPBACK_API_TOKEN
from tests.support.tiny_gguf import TinyModel
from tests.support.workers_ai_server import Reply, WorkersAIServer
from wai.backends.registry import LocalOptions
from wai.commands.chat.commands import make_completer
from wai.commands.chat.repl import run_chat
from wai.commands.chat.session import ChatOptions, ChatSession
from wai.errors import UsageError
from wai.notices import Notifier
from wai.sampling import Sampling
from wai.store.database import Store
from wai.store.transcript import TranscriptLog

TOKEN = LOOPBACK_API_TOKEN
FP16 = "@cf/meta/llama-2-7b-chat-fp16"
INT8 = "@cf/meta/llama-2-7b-chat-int8"


@dataclass
class Ran:
    code: int
    out: str
    err: str


def chat(*lines: str, options: ChatOptions | None = None) -> Ran:
    """Type each line and Enter, then Ctrl-D."""
    out, err = io.StringIO(), io.StringIO()
    with create_pipe_input() as keys:
        keys.send_text("".join(f"{line}\r" for line in lines) + "\x04")
        code = run_chat(
            options or ChatOptions(model=FP16),
            Notifier(stream=err),
            stdout=out,
            pt_input=keys,
            pt_output=DummyOutput(),
        )
    return Ran(code, out.getvalue(), err.getvalue())


def sent(server: WorkersAIServer) -> list[list[tuple[str, str]]]:
    return [[(m["role"], m["content"]) for m in r.json["messages"]] for r in server.requests]


def stored_turns() -> list[tuple[str, str, bool]]:
    with Store.open_default() as store:
        cid = store.latest_conversation_id()
        assert cid is not None
        return [
            (t.data.prompt, t.data.reply, t.superseded) for t in store.turns(cid, include_superseded=True)
        ]


REPLY = "token1 token2 token3 token4 token5 token6 token7 token8"


def test_three_turns_carry_the_conversation_and_are_logged(server: WorkersAIServer) -> None:
    ran = chat("first question", "second question", "third question")
    assert ran.code == 0
    assert ran.out.count(REPLY) == 3
    assert sent(server)[2] == [
        ("user", "first question"),
        ("assistant", REPLY),
        ("user", "second question"),
        ("assistant", REPLY),
        ("user", "third question"),
    ]
    assert all(r.json["max_tokens"] == 2500 for r in server.requests)
    assert stored_turns() == [
        (q, REPLY, False) for q in ("first question", "second question", "third question")
    ]


def test_transcripts_are_private_and_never_hold_the_api_token(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    chat("hello")
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    for name in ("logs.db", "chat_history"):
        assert stat.S_IMODE((isolated_home / name).stat().st_mode) == 0o600, name
    for path in isolated_home.iterdir():
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_model_switch_mid_conversation(server: WorkersAIServer) -> None:
    ran = chat("one", "/model llama-2-int8", "two", "/model no-such-model", "three")
    assert [r.model for r in server.requests] == [FP16, INT8, INT8]
    assert sent(server)[1][:2] == [("user", "one"), ("assistant", REPLY)]  # the conversation goes on
    assert server.requests[1].json["max_tokens"] == 1800  # the new model's output window
    assert f"{INT8} on remote" in ran.out
    assert "unknown model 'no-such-model'" in ran.err
    assert ran.code == 0


def test_unknown_commands_and_bad_values_never_reach_the_model(server: WorkersAIServer) -> None:
    ran = chat(
        "/modle x",
        "/set temperature hot",
        "/set temperature 9",
        "/set nonsense 1",
        "/backend sideways",
        "/retry",
        "/save",
    )
    assert server.requests == []
    lines = ran.err.splitlines()
    assert len(lines) == 7, ran.err
    assert "unknown command /modle; did you mean /model?" in lines[0]
    assert "not a number" in lines[1]
    assert "out of range" in lines[2]
    assert "nothing to retry" in lines[5]
    assert ran.code == 0


def test_settings_and_system_prompt_shape_the_next_request(server: WorkersAIServer) -> None:
    chat(
        "/system answer in French",
        "/set temperature 0.25",
        "/set top_p 0.5",
        "/set max_tokens 5",
        "bonjour",
        "/system -",
        "/set max_tokens default",
        "//etc/hosts is a file",
    )
    first, second = (r.json for r in server.requests)
    assert first["messages"][0] == {"role": "system", "content": "answer in French"}
    assert (first["temperature"], first["top_p"], first["max_tokens"]) == (0.25, 0.5, 5)
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][-1]["content"] == "/etc/hosts is a file"
    assert second["max_tokens"] == 2500


def test_set_takes_the_penalties_within_workers_ai_ranges(server: WorkersAIServer) -> None:
    ran = chat(
        "/set frequency_penalty -1",
        "/set repetition_penalty 1.3",
        "/set presence_penalty 2.5",
        "hello",
        "/set frequency_penalty default",
        "again",
    )
    assert (
        "/set presence_penalty: 2.5 is out of range (penalty for a token that appeared at all, -2 to 2)"
        in ran.err
    )
    first, second = (r.json for r in server.requests)
    assert (first["frequency_penalty"], first["repetition_penalty"]) == (-1, 1.3)
    assert "presence_penalty" not in first
    assert "frequency_penalty" not in second and second["repetition_penalty"] == 1.3


def test_a_penalty_llama_cpp_cannot_run_is_refused_on_the_local_backend(
    tiny_models: dict[str, TinyModel],
) -> None:
    pytest.importorskip("llama_cpp")
    options = ChatOptions(model=str(tiny_models["q8_0"].path), backend="local", max_tokens=50)
    ran = chat("/set repetition_penalty 0", "hello", "/set repetition_penalty 1.2", "hello", options=options)
    assert "--repetition-penalty 0 cannot run on the local backend" in ran.err
    assert "the message was not sent; change the setting with /set" in ran.err
    assert ran.out.count(tiny_models["q8_0"].script) == 1  # the second message was answered


def test_retry_regenerates_the_last_reply(server: WorkersAIServer) -> None:
    server.script(Reply.sse([{"response": "first answer"}]), Reply.sse([{"response": "better answer"}]))
    ran = chat("question", "/retry", "/history")
    assert sent(server)[1] == [("user", "question")]  # the old reply is not sent again
    assert ran.out.splitlines()[-1].endswith("llama-2-7b-chat-fp16: better answer")
    assert stored_turns() == [("question", "first answer", True), ("question", "better answer", False)]


def test_clear_starts_a_new_conversation(server: WorkersAIServer) -> None:
    chat("one", "/clear", "two")
    assert sent(server)[1] == [("user", "two")]
    with Store.open_default() as store:
        assert [c.first_prompt for c in store.recent(5)] == ["two", "one"]


def test_continue_resumes_the_last_conversation(server: WorkersAIServer) -> None:
    chat("remember 42", options=ChatOptions(model=INT8, system="be terse"))
    ran = chat("what number?", options=ChatOptions(continue_last=True))
    assert "continuing conversation" in ran.out and "(1 turn)" in ran.out
    assert server.requests[1].model == INT8  # the conversation's model, since -m was not given
    assert sent(server)[1] == [
        ("system", "be terse"),
        ("user", "remember 42"),
        ("assistant", REPLY),
        ("user", "what number?"),
    ]
    with Store.open_default() as store:
        assert len(store.recent(10)) == 1


def test_continue_a_given_conversation_by_id(server: WorkersAIServer) -> None:
    chat("alpha")
    with Store.open_default() as store:
        alpha = store.latest_conversation_id()
    assert alpha is not None
    chat("beta")
    chat("again", options=ChatOptions(cid=alpha[:16]))
    assert sent(server)[2][0] == ("user", "alpha")


def test_continue_with_an_unknown_id_fails_before_the_prompt(server: WorkersAIServer) -> None:
    with pytest.raises(UsageError, match="no conversation"):
        chat("x", options=ChatOptions(cid="nope"))


def _tiny_model(home: Path, window: int) -> None:
    (home / "models.toml").write_text(
        f"""
[models."@cf/test/tiny"]
context_window = {window}
max_output = 20
total_context = {window + 20}
""",
        encoding="utf-8",
    )


def test_a_growing_conversation_drops_its_oldest_turn(server: WorkersAIServer, isolated_home: Path) -> None:
    _tiny_model(isolated_home, 150)
    prompts = [f"question number {n} " + "padding " * 8 for n in range(1, 5)]
    ran = chat(*prompts, "/budget", options=ChatOptions(model="@cf/test/tiny"))
    assert "dropped the 2 oldest messages (1 turn)" in ran.err
    last = sent(server)[-1]
    assert last[-1] == ("user", prompts[-1])
    assert ("user", prompts[0]) not in last
    assert all(r.json["max_tokens"] <= 20 for r in server.requests)
    assert "turn  1" in ran.out and "the next message drops the oldest" in ran.out
    assert len(stored_turns()) == 4  # the transcript keeps everything


def test_budget_tells_what_the_next_message_drops_within_the_windows_turns_are_planned_in(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    # The entry allows 2048 tokens; its file was trained on 512, so every turn is planned within
    # 512: /budget says the same of the next one, not what 2048 would allow.
    (isolated_home / "models.toml").write_text(
        f'[models."wide"]\ngguf = "{tiny_models["q8_0"].path}"\n'
        "context_window = 2048\nmax_output = 1800\ntotal_context = 2048\n",
        encoding="utf-8",
    )
    options = ChatOptions(model="wide", backend="local", max_tokens=50, local=LocalOptions(threads=1))
    ran = chat(*["word " * 60] * 3, "/budget", options=options)
    assert "dropped the 4 oldest messages (2 turns) to fit 462 tokens" in ran.err  # the third turn
    assert "input    992 of 512 tokens" in ran.out
    assert "prompt and reply together at most 512" in ran.out
    assert "next     the next message drops the oldest 2 turns (turns 1-2)" in ran.out


def test_a_message_too_big_for_the_window_is_refused_and_the_repl_stays(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    _tiny_model(isolated_home, 150)
    ran = chat("word " * 400, "small", options=ChatOptions(model="@cf/test/tiny"))
    assert "accepts at most 150 input tokens" in ran.err
    assert "was not sent" in ran.err
    assert sent(server) == [[("user", "small")]]


def test_a_failed_turn_is_reported_and_the_conversation_goes_on(server: WorkersAIServer) -> None:
    server.script(Reply.error(400, 5007, "No such model"))
    ran = chat("first", "second")
    assert "wai: error:" in ran.err
    assert sent(server)[1] == [("user", "second")]  # the failed turn is not part of the conversation


def test_save_writes_markdown(server: WorkersAIServer, tmp_path: Path) -> None:
    target = tmp_path / "talk.md"
    ran = chat("/system be kind", "hello", f"/save {target}")
    text = target.read_text(encoding="utf-8")
    assert f"saved 1 turn to {target}" in ran.out
    assert "## System\n\nbe kind" in text
    assert "## You\n\nhello\n\n## llama-2-7b-chat-fp16\n\n" + REPLY in text
    bad = chat(f"/save {tmp_path}/missing/dir/x.md")
    assert "cannot write" in bad.err


def test_no_log_writes_no_transcript(server: WorkersAIServer, isolated_home: Path) -> None:
    chat("hello", options=ChatOptions(model=FP16, log=False))
    assert len(server.requests) == 1
    assert not (isolated_home / "logs.db").exists()


def test_exit_command_leaves_with_zero(server: WorkersAIServer) -> None:
    ran = chat("/exit", "never sent")
    assert ran.code == 0
    assert server.requests == []


def test_help_names_every_backend_the_registry_lists(server: WorkersAIServer) -> None:
    from wai.backends.registry import backend_names

    ran = chat("/help")
    assert f"/backend [auto|{'|'.join(backend_names())}]" in ran.out
    assert "openai" in backend_names()
    assert server.requests == []


def test_completion_of_commands_and_models(server: WorkersAIServer) -> None:
    session = ChatSession(ChatOptions(model=FP16), Notifier(), TranscriptLog(Notifier(), source="chat"))
    completer = make_completer(session)

    def complete(text: str) -> list[tuple[str, str]]:
        found = completer.get_completions(Document(text, len(text)), CompleteEvent(completion_requested=True))
        return [(c.text, c.display_meta_text) for c in found]

    assert [text for text, _ in complete("/mo")] == ["/model "]
    assert [text for text, _ in complete("/h")] == ["/help", "/history"]
    models = dict(complete("/model fp16"))
    assert models[FP16] == "in 3072 · out 2500"
    assert [t for t, _ in complete("/backend r")] == ["remote"]
    assert [t for t, _ in complete("/set te")] == ["temperature"]
    assert complete("hello /mo") == []


def test_chat_refuses_a_stdin_that_is_not_a_terminal(isolated_home: Path) -> None:
    from tests.support.cli import run_wai

    done = run_wai("chat", timeout=30)  # stdin: /dev/null
    assert done.returncode == 2
    assert "needs a terminal" in done.stderr and "wai ask" in done.stderr
    assert "Traceback" not in done.stderr


def test_interrupted_turns_reload_with_their_partial_reply(server: WorkersAIServer) -> None:
    log = TranscriptLog(Notifier(), source="chat")
    from wai.turn_result import TurnInfo, TurnResult

    info = TurnInfo(
        model=FP16, backend="remote", precision=None, context_window=3072, max_output=2500, max_tokens=9
    )
    log.record_turn(
        "long story",
        TurnResult(info=info, text="Once upon", finish_reason="interrupted"),
        system=None,
        sampling=Sampling(),
    )
    log.close()
    chat("go on", options=ChatOptions(continue_last=True))
    assert sent(server)[0] == [("user", "long story"), ("assistant", "Once upon"), ("user", "go on")]


def test_the_database_stays_sound(server: WorkersAIServer, isolated_home: Path) -> None:
    chat("a", "b")
    db = sqlite3.connect(isolated_home / "logs.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()

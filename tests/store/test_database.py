"""The transcript database: what goes in comes back, it migrates forward, and a failed write harms nothing."""

from __future__ import annotations

import io
import json
import sqlite3
import stat
from pathlib import Path

import pytest

from wai.commands.logs import LogsOptions, run_logs
from wai.errors import BackendError, ConfigError, UsageError
from wai.notices import Notifier
from wai.sampling import Sampling
from wai.store.database import SCHEMA_VERSION, Store, TurnData, db_path, new_conversation_id
from wai.store.transcript import TranscriptLog
from wai.turn_result import Timings, TurnInfo, TurnResult


def _turn(prompt: str, reply: str = "a reply", **changes: object) -> TurnData:
    values: dict[str, object] = {"prompt": prompt, "reply": reply, "model": "@cf/meta/m", "backend": "remote"}
    values.update(changes)
    return TurnData(**values)  # type: ignore[arg-type]


def _result(text: str, *, reason: str = "stop", error: str | None = None) -> TurnResult:
    info = TurnInfo(
        model="@cf/meta/llama-2-7b-chat-fp16",
        backend="remote",
        precision="f16",
        context_window=3072,
        max_output=2500,
        max_tokens=2500,
        prompt_tokens=21,
    )
    return TurnResult(
        info=info,
        text=text,
        finish_reason=reason,  # type: ignore[arg-type]
        prompt_tokens=21,
        completion_tokens=5,
        timings=Timings(first_token=0.125, total=0.5),
        error=BackendError(error) if error is not None else None,
    )


def test_a_turn_comes_back_with_every_field() -> None:
    with Store.open_default() as store:
        cid = new_conversation_id()
        data = _turn(
            "where is new york?",
            "In the state of New York.",
            system="be brief",
            precision="f16",
            prompt_tokens=31,
            completion_tokens=12,
            usage_exact=False,
            max_tokens=2500,
            sampling={"temperature": 0.2},
            first_token_s=0.25,
            total_s=1.5,
            load_s=None,
            finish_reason="length",
            interrupted=False,
            error=None,
            reasoning="The user asks about geography.\nNew York is a state and a city.",
        )
        stored = store.add_turn(cid, data, source="ask")
        assert store.turns(cid) == [stored]
        assert store.turns(cid)[0].data == data
        summary = store.conversation(cid)
        assert (summary.model, summary.system, summary.source, summary.turns) == (
            "@cf/meta/m",
            "be brief",
            "ask",
            1,
        )
        assert summary.first_prompt == "where is new york?"


def test_the_file_is_private_and_durable() -> None:
    with Store.open_default() as store:
        store.add_turn(new_conversation_id(), _turn("hi"), source="chat")
        assert store.schema_version() == SCHEMA_VERSION
    path = db_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_conversations_list_newest_first_and_resolve_by_prefix() -> None:
    with Store.open_default() as store:
        first, second = new_conversation_id(), new_conversation_id()
        store.add_turn(first, _turn("one"), source="ask")
        store.add_turn(second, _turn("two"), source="chat")
        store.add_turn(first, _turn("three"), source="ask")  # first is now the latest
        assert [row.id for row in store.recent(10)] == [first, second]
        assert store.latest_conversation_id() == first
        assert store.resolve_conversation_id(second[:20]) == second
        assert store.resolve_conversation_id(second.upper()) == second
        with pytest.raises(UsageError, match="no conversation"):
            store.resolve_conversation_id("zzzz")
        with pytest.raises(UsageError, match="several"):
            store.resolve_conversation_id(first[:2])  # both ids start with the same time


def test_a_retried_turn_is_superseded_but_kept() -> None:
    with Store.open_default() as store:
        cid = new_conversation_id()
        old = store.add_turn(cid, _turn("q", "first try"), source="chat")
        new = store.add_turn(cid, _turn("q", "second try"), source="chat", replaces=old.id)
        assert [t.data.reply for t in store.turns(cid)] == ["second try"]
        every = store.turns(cid, include_superseded=True)
        assert [(t.id, t.superseded) for t in every] == [(old.id, True), (new.id, False)]


def test_an_old_database_migrates_forward_and_a_newer_one_is_refused() -> None:
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(path).close()  # an empty file: schema version 0
    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        store.add_turn(new_conversation_id(), _turn("kept"), source="ask")
    with Store(path) as store:  # opening again changes nothing
        assert store.recent(5)[0].first_prompt == "kept"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigError, match="newer wai"):
        Store(path)


def open_handles(path: Path) -> int:
    """This process's file descriptors open on `path`."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if fd.is_symlink() and fd.readlink() == path.resolve())


@pytest.mark.parametrize("read_only", [False, True])
@pytest.mark.parametrize("damage", ["newer", "not a database"])
def test_a_refused_database_is_left_closed(read_only: bool, damage: str) -> None:
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage == "newer":
        db = sqlite3.connect(path)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.close()
    else:
        path.write_bytes(b"not a database " * 100)
    with pytest.raises(ConfigError, match=r"newer wai|not a usable|cannot open") as refused:
        Store(path, read_only=read_only)
    # The refusal's traceback still holds the half-made Store: its connection must be closed.
    assert refused.value.__traceback__ is not None
    assert open_handles(path) == 0


def test_a_version_1_database_keeps_its_turns_and_gains_the_thinking_column() -> None:
    from wai.store.database import _MIGRATIONS

    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    for statement in _MIGRATIONS[0]:  # the schema wai wrote before reasoning models
        db.execute(statement)
    db.execute(
        "INSERT INTO conversations VALUES ('01old', '2025-01-01T00:00:00', '2025-01-01T00:00:00', "
        "'@cf/meta/m', NULL, 'ask')"
    )
    db.execute(
        "INSERT INTO turns (conversation_id, created_at, prompt, reply, model, backend, usage_exact, "
        "sampling, interrupted) VALUES ('01old', '2025-01-01T00:00:00', 'old question', 'old answer', "
        "'@cf/meta/m', 'remote', 1, '{}', 0)"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        (old,) = store.turns("01old")
        assert (old.data.prompt, old.data.reply, old.data.reasoning) == ("old question", "old answer", "")
        store.add_turn("01old", _turn("new", "answer", reasoning="thinking first"), source="ask")
        assert [t.data.reasoning for t in store.turns("01old")] == ["", "thinking first"]


def test_a_file_that_is_not_a_database_is_a_clear_error() -> None:
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable transcript database"):
        Store(path)


def test_a_full_disk_fails_one_turn_and_harms_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    notifier = Notifier()
    log = TranscriptLog(notifier, source="chat")
    for n in range(3):
        assert log.record_turn(f"question {n}", _result(f"answer {n}"), system=None, sampling=Sampling())
    store = log._open()
    # SQLite reports a full disk (SQLITE_FULL) once the file may not grow: the same path as a real one.
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")
    huge = "x" * 200_000
    assert log.record_turn("too big", _result(huge), system=None, sampling=Sampling()) is None
    assert log.record_turn("again", _result(huge), system=None, sampling=Sampling()) is None
    warnings = capsys.readouterr().err
    assert warnings.count("not saved to the transcript") == 1  # said once, not on every turn
    assert "full" in warnings
    cid = log.conversation_id
    log.close()
    with Store.open_default() as store:
        assert store.integrity_check() == "ok"
        assert cid is not None
        assert [t.data.prompt for t in store.turns(cid)] == ["question 0", "question 1", "question 2"]


def test_continue_brings_back_the_turns_as_messages() -> None:
    notifier = Notifier()
    log = TranscriptLog(notifier, source="ask")
    log.record_turn("first", _result("one"), system="sys", sampling=Sampling(temperature=0.5))
    log.record_turn("failed", _result("", reason="error", error="boom"), system="sys", sampling=Sampling())
    log.record_turn("second", _result("tw", reason="interrupted"), system="sys", sampling=Sampling())
    cid = log.conversation_id
    log.close()

    again = TranscriptLog(notifier, source="chat")
    continued = again.continue_conversation(None)
    assert continued.id == cid
    assert continued.system == "sys"
    assert continued.model == "@cf/meta/llama-2-7b-chat-fp16"
    assert [(m.role, m.content) for m in continued.messages()] == [
        ("user", "first"),
        ("assistant", "one"),
        ("user", "second"),
        ("assistant", "tw"),
    ]
    assert continued.turns[2].data.interrupted
    assert continued.turns[0].data.sampling == {"temperature": 0.5}
    # New turns join the continued conversation.
    again.record_turn("third", _result("three"), system="sys", sampling=Sampling())
    assert again.conversation_id == cid
    again.close()


def test_continue_with_nothing_logged_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no conversation to continue"):
        TranscriptLog(Notifier(), source="chat").continue_conversation(None)


def test_no_log_records_nothing() -> None:
    log = TranscriptLog(Notifier(), source="ask", record=False)
    assert log.record_turn("p", _result("r"), system=None, sampling=Sampling()) is None
    assert not db_path().exists()


def test_logs_lists_and_shows_conversations() -> None:
    log = TranscriptLog(Notifier(), source="chat")
    log.record_turn("where is new york?", _result("In New York State."), system=None, sampling=Sampling())
    log.record_turn(
        "and paris?", _result("In France.", reason="interrupted"), system=None, sampling=Sampling()
    )
    cid = log.conversation_id
    assert cid is not None
    log.close()

    out = io.StringIO()
    assert run_logs(LogsOptions(json=True), Notifier(), stdout=out) == 0
    listed = json.loads(out.getvalue())
    assert [(c["id"], c["turns"], c["source"]) for c in listed] == [(cid, 2, "chat")]

    out = io.StringIO()
    run_logs(LogsOptions(cid=cid[:12], json=True), Notifier(), stdout=out)
    shown = json.loads(out.getvalue())
    assert [t["prompt"] for t in shown["turns"]] == ["where is new york?", "and paris?"]
    assert shown["turns"][1]["interrupted"] is True
    assert shown["turns"][0]["first_token_s"] == 0.125

    out = io.StringIO()
    run_logs(LogsOptions(cid=cid, count=1), Notifier(), stdout=out)
    text = out.getvalue()
    assert "> and paris?" in text and "In France." in text and "interrupted" in text
    assert "new york" not in text

    out = io.StringIO()
    run_logs(LogsOptions(), Notifier(), stdout=out)
    assert cid in out.getvalue() and "2 turns" in out.getvalue()


def test_logs_with_nothing_logged(capsys: pytest.CaptureFixture[str], isolated_home: Path) -> None:
    out = io.StringIO()
    assert run_logs(LogsOptions(json=True), Notifier(), stdout=out) == 0
    assert out.getvalue() == "[]\n"
    with pytest.raises(UsageError):
        run_logs(LogsOptions(cid="abc"), Notifier(), stdout=out)
    assert not (isolated_home / "logs.db").exists()


_WRITER = """
import sys
from wai.store.database import Store, TurnData
store = Store.open_default()
n = 0
while True:
    turn = TurnData(prompt=f"p{n}", reply="r" * 3000, model="m", backend="remote")
    store.add_turn(sys.argv[1], turn, source="ask")
    print(n, flush=True)
    n += 1
"""


@pytest.mark.e2e
@pytest.mark.parametrize("after", [1, 7, 23, 60])
def test_kill_9_while_writing_keeps_every_acknowledged_turn(after: int) -> None:
    import os
    import signal
    import subprocess
    import sys

    cid = new_conversation_id()
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, cid], stdout=subprocess.PIPE, text=True, env={**os.environ}
    )
    assert writer.stdout is not None
    acknowledged = -1
    for _ in range(after):
        acknowledged = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)  # most likely in the middle of the next transaction
    writer.wait()
    writer.stdout.close()
    with Store.open_default() as store:
        assert store.integrity_check() == "ok"
        prompts = [t.data.prompt for t in store.turns(cid)]
        # Every commit that returned is there, in order, and nothing torn or out of order beyond:
        # the writer may have committed more turns than this side read before the kill landed.
        assert len(prompts) >= acknowledged + 1
        assert prompts == [f"p{n}" for n in range(len(prompts))]
        store.add_turn(cid, _turn("after the crash"), source="ask")  # and it takes new turns

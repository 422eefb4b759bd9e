"""Transcripts written by an earlier wai stay readable and lose nothing when they migrate.

fixtures/logs-schema-2.db was written by wai at schema 2 (one `usage_exact` for the prompt's and
the reply's counts together), through the installed `wai ask` against the loopback servers:

- conversation "model-a" (eng:org/model-a, a vLLM-like provider): turn 1, the prompt counted by
  the server (11, exact) and a reply without usage (4, estimated), so `usage_exact` 0; turn 2,
  both counted by the server (30 and 2);
- conversation "llama-3.1-8b-instruct-fp8" (Workers AI, system "be brief"): turn 3, the server's
  usage (11 and 3); turn 4, a stream that broke after "Half" (estimated, an error kept).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.openai_server import base_url, openai_server
from tests.support.workers_ai_server import Reply, WorkersAIServer, openai_chunks
from wai.store.database import SCHEMA_VERSION, Store, StoredTurn, TurnData, db_path

FIXTURE = Path(__file__).parent / "fixtures" / "logs-schema-2.db"

# (prompt, reply, prompt_tokens, completion_tokens, usage_exact, finish_reason, error?) as written
WRITTEN = [
    ("what is the capital of France?", "Paris is the capital", 11, 4, False, "stop", False),
    ("what about Italy?", "Yes.", 30, 2, True, "stop", False),
    ("hello", "token1 token2 token3", 11, 3, True, "stop", False),
    ("and then?", "Half", 54, 1, False, "error", True),
]


def _facts(turns: list[StoredTurn]) -> list[tuple[object, ...]]:
    return [
        (
            t.data.prompt,
            t.data.reply,
            t.data.prompt_tokens,
            t.data.completion_tokens,
            t.data.usage_exact,
            t.data.finish_reason,
            t.data.error is not None,
        )
        for t in turns
    ]


def _all_turns(store: Store) -> list[StoredTurn]:
    conversations = sorted(store.recent(100), key=lambda c: c.created_at)
    return [turn for c in conversations for turn in store.turns(c.id, include_superseded=True)]


def _schema_2_home() -> Path:
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE, path)
    return path


def test_the_fixture_is_schema_2() -> None:
    db = sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = {row[1] for row in db.execute("PRAGMA table_info(turns)")}
    finally:
        db.close()
    assert "usage_exact" in columns and "prompt_exact" not in columns


def test_a_schema_2_database_is_read_as_it_is_without_writing() -> None:
    path = _schema_2_home()
    before = path.read_bytes()
    with Store(path, read_only=True) as store:
        assert store.schema_version() == 2
        turns = _all_turns(store)
    assert _facts(turns) == WRITTEN
    assert all(t.data.prompt_exact is None for t in turns)  # not kept apart then
    assert path.read_bytes() == before


def test_a_schema_2_database_migrates_keeping_every_turn() -> None:
    path = _schema_2_home()
    with Store(path, read_only=True) as store:
        before = [t.as_dict() for t in _all_turns(store)]
    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION
        after = [t.as_dict() for t in _all_turns(store)]
        assert store.integrity_check() == "ok"
    assert after == before
    assert _facts(_all_turns(Store(path, read_only=True))) == WRITTEN


def test_wai_logs_shows_an_old_turn_as_it_did_and_a_new_one_exact_where_it_is(isolated_home: Path) -> None:
    _schema_2_home()
    listed = run_wai("logs", "--json")
    assert listed.returncode == 0, listed.stderr
    old = run_wai("logs", "--cid", "01m94c4r5h")
    assert old.returncode == 0, old.stderr
    # The old turn said its two counts with one flag: both stay marked as estimates.
    assert "~11 in, ~4 out" in old.stdout and "30 in, 2 out" in old.stdout
    no_usage = Reply.sse(openai_chunks(answer=["a", "b", "c"]))
    with openai_server(
        "vllm", models={"org/model-a": 4096}, routes={"POST /v1/chat/completions": no_usage}
    ) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\n', encoding="utf-8"
        )
        asked = run_wai("ask", "--cid", "01m94c4r5h", "and Spain?")
    assert asked.returncode == 0, asked.stderr
    shown = run_wai("logs", "--cid", "01m94c4r5h").stdout
    # The server counted the prompt; only the reply's 3 is an estimate.
    new_line = shown.strip().splitlines()[-1]
    assert ", ~3 out" in new_line and " ~" not in new_line.split(" in,")[0], new_line
    turns = run_wai("logs", "--json", "--cid", "01m94c4r5h").stdout
    assert '"prompt_exact": true' in turns and '"prompt_exact": null' in turns


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_read_only_schema_is_still_listed(version: int) -> None:
    from wai.store.database import _MIGRATIONS

    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    for migration in _MIGRATIONS[:version]:
        for statement in migration:
            db.execute(statement)
    db.execute(
        "INSERT INTO conversations VALUES ('01old', '2025-01-01T00:00:00', '2025-01-01T00:00:00', "
        "'@cf/meta/m', NULL, 'ask')"
    )
    db.execute(
        "INSERT INTO turns (conversation_id, created_at, prompt, reply, model, backend, usage_exact, "
        "sampling, interrupted) VALUES ('01old', '2025-01-01T00:00:00', 'q', 'a', '@cf/meta/m', "
        "'remote', 1, '{}', 0)"
    )
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()
    with Store(path, read_only=True) as store:
        (turn,) = store.turns("01old")
    assert (turn.data.prompt, turn.data.reply, turn.data.reasoning, turn.data.prompt_exact) == (
        "q",
        "a",
        "",
        None,
    )
    assert turn.data.prompt_counted_exactly


def test_a_turn_whose_figures_another_program_wrote_oddly_is_still_shown(
    isolated_home: Path,
) -> None:
    # SQLite keeps what a column is given: a file mended by hand or written by another tool may
    # hold a word for a count, a blob for a time, or sampling that is not JSON. Each such figure
    # reads as unknown; the turn's words are shown whole.
    cid = "01odd"
    with Store(db_path()) as store:
        store.add_turn(cid, _turn("what is 2+2?", "4"), source="ask")
    db = sqlite3.connect(db_path())
    db.execute(
        "UPDATE turns SET prompt_tokens = 'many', completion_tokens = 7.0, total_s = 'slow', "
        "first_token_s = X'00', max_tokens = 1e999, sampling = ?",
        ('not json {"temperature": 0.2',),
    )
    db.commit()
    db.close()
    shown = run_wai("logs", "--cid", cid)
    assert shown.returncode == 0, shown.stderr
    assert "> what is 2+2?" in shown.stdout and "\n4\n" in shown.stdout
    assert "? in, 7 out" in shown.stdout  # unknown, not 0
    as_json = run_wai("logs", "--json", "--cid", cid)
    assert as_json.returncode == 0, as_json.stderr
    with Store(db_path(), read_only=True) as store:
        (turn,) = store.turns(cid)
    data = turn.data
    assert (data.prompt_tokens, data.completion_tokens, data.total_s, data.first_token_s) == (
        None,
        7,
        None,
        None,
    )
    assert data.max_tokens is None and data.sampling == {}
    db = sqlite3.connect(db_path())
    db.execute("UPDATE turns SET sampling = ?", ('{"temperature": "hot", "top_p": 0.5}',))
    db.commit()
    db.close()
    with Store(db_path(), read_only=True) as store:
        (turn,) = store.turns(cid)
    assert turn.data.sampling == {"top_p": 0.5}  # only what a sampling option can be


@pytest.mark.parametrize("cost", ["-5", "1e308", "'abc'"])
def test_a_cost_another_program_wrote_oddly_reads_as_unknown(isolated_home: Path, cost: str) -> None:
    # A negative cost made every view of it a 'math domain error' traceback (wai logs --cid,
    # --usage, --export); a huge one summed to inf.
    cid = "01cost"
    with Store(db_path()) as store:
        store.add_turn(cid, _turn("q", "a"), source="ask")
        store.add_turn(cid, _turn("q2", "a2"), source="ask")
    db = sqlite3.connect(db_path())
    db.execute(f"UPDATE turns SET cost_usd = {cost}, neurons = {cost}")
    db.commit()
    db.close()
    for args in (("logs", "--cid", cid), ("logs", "--usage"), ("logs", "--export", "md", cid)):
        shown = run_wai(*args)
        assert shown.returncode == 0, (args, shown.stderr)
        assert "inf" not in shown.stdout and "$-" not in shown.stdout, shown.stdout
    with Store(db_path(), read_only=True) as store:
        assert [(t.data.cost_usd, t.data.neurons) for t in store.turns(cid)] == [(None, None)] * 2


def test_text_another_program_kept_as_blobs_is_read_as_text(isolated_home: Path) -> None:
    cid = "01blob"
    with Store(db_path()) as store:
        store.add_turn(cid, _turn("q", "a"), source="ask")
    db = sqlite3.connect(db_path())
    db.execute("UPDATE conversations SET created_at = X'00', updated_at = X'ff', model = X'6d'")
    db.execute("UPDATE turns SET prompt = CAST('what is 2+2?' AS BLOB), reply = X'34', created_at = X'01'")
    db.commit()
    db.close()
    for args in (("logs",), ("logs", "--json"), ("logs", "--cid", cid), ("logs", "--json", "--cid", cid)):
        shown = run_wai(*args)
        assert shown.returncode == 0, shown.stderr
        assert "what is 2+2?" in shown.stdout
    assert "\n4\n" in run_wai("logs", "--cid", cid).stdout


def _turn(prompt: str, reply: str) -> TurnData:
    return TurnData(prompt=prompt, reply=reply, model="@cf/meta/m", backend="remote", prompt_tokens=5)


# fixtures/logs-schema-3.db: written by wai at schema 3 through the installed `wai ask` against
# the loopback Workers AI server: conversation 01m94e5yjd96shrh5ec8r6yfgy (llama-3.1-8b-instruct-fp8,
# two turns, the second with -c) and 01m94e5zspk3t3n5j5phc9z17g (kimi-k2.6, system "be brief").
FIXTURE_3 = Path(__file__).parent / "fixtures" / "logs-schema-3.db"
WRITTEN_3 = [
    ("what is the capital of France?", "token1 token2 token3", 10, 3, True, "stop", False),
    ("and of Italy?", "token1 token2 token3", 24, 3, True, "stop", False),
    ("hello", "token1 token2 token3", 11, 3, True, "stop", False),
]


def test_a_schema_3_database_migrates_keeping_every_turn_without_a_cost() -> None:
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE_3, path)
    with Store(path, read_only=True) as store:
        assert store.schema_version() == 3
        before = [t.as_dict() for t in _all_turns(store)]
    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION > 3
        turns = _all_turns(store)
        assert store.integrity_check() == "ok"
    assert [t.as_dict() for t in turns] == before
    assert _facts(turns) == WRITTEN_3
    # The file as schema 3 left it is kept beside it, untouched.
    backup = sqlite3.connect(f"file:{path}.schema-3.bak?mode=ro", uri=True)
    try:
        assert backup.execute("PRAGMA user_version").fetchone()[0] == 3
        assert backup.execute("SELECT count(*) FROM turns").fetchone()[0] == 3
    finally:
        backup.close()
    # Nothing was known of cost or caching then: none is made up now.
    assert all(
        t.data.cost_usd is None and t.data.neurons is None and t.data.cached_tokens is None for t in turns
    )
    assert all(t.data.prompt_exact is True for t in turns)


# fixtures/logs-schema-5.db: today's format, written through `wai ask` and `wai chat` against the
# loopback Workers AI server with a priced listing: 01m94fqn7j... two turns (-c; the second with
# 10 cached tokens); 01m94fqp1p... "one", /retry, "two"; 01m94fqpa9... its /fork, "three".
FIXTURE_5 = Path(__file__).parent / "fixtures" / "logs-schema-5.db"


def test_todays_format_keeps_costs_branches_and_forks() -> None:
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE_5, path)
    with Store(path) as store:
        assert store.schema_version() == 5
        turns = _all_turns(store)
        assert [(t.id, t.data.parent_id, t.superseded) for t in turns] == [
            (1, 0, False),
            (2, 1, False),
            (3, 0, True),
            (4, 0, False),
            (5, 4, False),
            (6, 5, False),
        ]
        assert turns[1].data.cached_tokens == 10
        usd = (14 * 0.3 + 10 * 0.05 + 3 * 2.0) / 1e6
        assert turns[1].data.cost_usd == pytest.approx(usd)
        assert turns[1].data.neurons == pytest.approx(usd / 0.011 * 1000)
        fork = turns[5].conversation_id
        assert [t.id for t in store.active_path(fork)] == [4, 5, 6]
        assert [t.id for t in store.active_path(turns[3].conversation_id)] == [4, 5]
        assert [t.id for t in store.alternatives(turns[3])] == [3, 4]
    usage = run_wai("logs", "--usage", "--json", "--since", "2020-01-01")
    assert usage.returncode == 0, usage.stderr
    assert json_total_turns(usage.stdout) == 6


def json_total_turns(document: str) -> int:
    import json

    return int(json.loads(document)["total"]["turns"])


def test_a_database_of_a_newer_wai_is_refused_by_every_command_with_its_bytes_unchanged(
    isolated_home: Path, server: WorkersAIServer
) -> None:
    # Today's format marked one schema newer, in SQLite's rollback journal as a newer wai may
    # leave it: switching it to WAL would rewrite its header (format and change counter).
    path = db_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).parent / "fixtures" / f"logs-schema-{SCHEMA_VERSION}.db", path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    before = path.read_bytes()
    for args in (("logs",), ("logs", "--usage"), ("logs", "--cid", "01"), ("ask", "-c", "hello")):
        done = run_wai(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "newer wai" in done.stderr
        assert path.read_bytes() == before, args
    answered = run_wai("ask", "hello")  # answered, but not saved into a file it does not know
    assert answered.returncode == 0 and "not saved" in answered.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith("logs.db")) == ["logs.db"]

"""`wai logs --usage` (the usage ledger) and the `daily_neurons` budget, through the installed `wai`
against the loopback Workers AI server with a priced model listing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_wai
from tests.support.workers_ai_server import WorkersAIServer, price_listing, search_result
from wai.store.database import db_path

PRICED = "@cf/meta/llama-3.1-8b-instruct-fp8"
UNPRICED = "@cf/meta/llama-2-7b-chat-int8"
KIMI = "@cf/moonshotai/kimi-k2.6"


@pytest.fixture
def priced(server: WorkersAIServer) -> WorkersAIServer:
    server.simulation.prompt_cache = True
    server.simulation.catalog = [search_result(PRICED, window=32000, price=price_listing(0.3, 2.0, 0.05))]
    assert run_wai("models", "--refresh").returncode == 0
    return server


def ask(*args: str) -> None:
    done = run_wai("ask", *args)
    assert done.returncode == 0, done.stderr


def logged_turns() -> list[Any]:
    turns: list[Any] = []
    for conversation in json.loads(run_wai("logs", "--json", "-n", "0").stdout):
        shown = json.loads(run_wai("logs", "--json", "--cid", conversation["id"]).stdout)
        turns += shown["turns"]
    return turns


def usage(*args: str) -> Any:
    done = run_wai("logs", "--usage", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_ledger_totals_the_turns_by_model_and_by_day(priced: WorkersAIServer) -> None:
    ask("-m", PRICED, "one")
    ask("-c", "two")
    ask("-m", UNPRICED, "three")
    ask("-m", KIMI, "four")
    turns = logged_turns()
    by_model = usage("--by", "model")
    rows = {row["model"]: row for row in by_model["rows"]}
    assert set(rows) == {PRICED, UNPRICED, KIMI}
    priced_turns = [t for t in turns if t["model"] == PRICED]
    assert rows[PRICED]["turns"] == 2
    assert rows[PRICED]["prompt_tokens"] == sum(t["prompt_tokens"] for t in priced_turns)
    assert rows[PRICED]["cached_tokens"] == priced_turns[0]["prompt_tokens"]
    assert rows[PRICED]["usd"] == pytest.approx(sum(t["cost_usd"] for t in priced_turns))
    assert rows[UNPRICED]["unpriced_turns"] == 1 and rows[UNPRICED]["usd"] == 0
    total = by_model["total"]
    assert isinstance(total, dict) and total["turns"] == 4
    all_neurons = sum(t["neurons"] or 0 for t in turns)
    assert total["neurons"] == pytest.approx(all_neurons)

    by_day = usage()
    (row,) = by_day["rows"]
    assert row["turns"] == 4 and row["neurons"] == pytest.approx(all_neurons)
    today = by_day["today"]
    assert isinstance(today, dict)
    assert today["neurons"] == pytest.approx(all_neurons)
    assert today["free_share"] == pytest.approx(all_neurons / 10_000, rel=1e-3)

    shown = run_wai("logs", "--usage", "--by", "model")
    assert shown.returncode == 0, shown.stderr
    assert PRICED in shown.stdout and "total" in shown.stdout
    assert "of the 10,000 free Workers AI neurons" in shown.stdout
    assert "1 turn of a model without a price adds" in shown.stderr


def test_since_leaves_out_older_turns(priced: WorkersAIServer) -> None:
    ask("-m", PRICED, "old")
    ask("-m", PRICED, "new")
    db = sqlite3.connect(db_path())
    db.execute("UPDATE turns SET created_at = '2026-01-02T10:00:00.000+00:00' WHERE prompt = 'old'")
    db.commit()
    db.close()
    assert usage("--since", "7d")["total"]["turns"] == 1
    assert usage("--since", "2026-01-01")["total"]["turns"] == 2
    bad = run_wai("logs", "--usage", "--since", "last tuesday")
    assert bad.returncode == 2 and "--since" in bad.stderr and "Traceback" not in bad.stderr
    assert run_wai("logs", "--usage", "--by", "week").returncode == 2
    alone = run_wai("logs", "--since", "7d")
    assert alone.returncode == 2 and "--since and --by go with --usage" in alone.stderr


def test_an_empty_ledger_says_so(isolated_home: Path) -> None:
    done = run_wai("logs", "--usage")
    assert done.returncode == 0 and "no turns logged since" in done.stdout
    assert usage()["total"]["turns"] == 0


def budget(home: Path, neurons: float) -> None:
    (home / "config.toml").write_text(f"daily_neurons = {neurons}\n", encoding="utf-8")


def runs(server: WorkersAIServer) -> int:
    return sum(1 for r in server.requests if "/ai/run/" in r.path)


def test_a_turn_whose_worst_case_passes_the_budget_is_warned_of(
    priced: WorkersAIServer, isolated_home: Path
) -> None:
    budget(isolated_home, 1000)
    # kimi-k2.6 may answer 32,768 tokens at $4 per M: about 11,900 neurons at worst.
    done = run_wai("ask", "-m", KIMI, "hi")
    assert done.returncode == 0, done.stderr
    assert "could pass the budget of 1,000" in done.stderr
    small = run_wai("ask", "-m", PRICED, "--max-tokens", "10", "hi")
    assert "budget" not in small.stderr


@pytest.mark.parametrize("form", ["--json", "--jsonl"])
def test_the_budget_warnings_are_among_the_json_warnings(
    priced: WorkersAIServer, isolated_home: Path, form: str
) -> None:
    budget(isolated_home, 1000)
    done = run_wai("ask", form, "-m", KIMI, "hi")
    assert done.returncode == 0, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert any("could pass the budget of 1,000" in warning for warning in last["warnings"]), last
    budget(isolated_home, 0.0001)
    forced = run_wai("ask", form, "--force", "-m", PRICED, "more")
    assert forced.returncode == 0, forced.stderr
    last = json.loads(forced.stdout.strip().splitlines()[-1])
    assert any("sending (--force)" in warning for warning in last["warnings"]), last


@pytest.mark.parametrize("damage", ["newer", "not a database"])
def test_a_budget_over_a_logs_db_that_cannot_be_read_warns_and_answers(
    priced: WorkersAIServer, isolated_home: Path, damage: str
) -> None:
    # Without a budget such a file costs a warning (the turn is not saved); with one, the turn
    # was refused (exit 2, 'cannot be changed here') though nothing was to be changed.
    ask("-m", PRICED, "logged")
    if damage == "newer":
        db = sqlite3.connect(db_path())
        db.execute("PRAGMA user_version = 99")
        db.commit()
        db.close()
    else:
        db_path().write_bytes(b"not a database " * 100)
    budget(isolated_home, 5000)
    done = run_wai("ask", "-m", PRICED, "hi")
    assert done.returncode == 0, done.stderr
    assert "the budget of 5,000 is not checked" in done.stderr


def test_a_spent_budget_refuses_the_turn_until_forced(priced: WorkersAIServer, isolated_home: Path) -> None:
    ask("-m", PRICED, "spend something")
    budget(isolated_home, 0.0001)
    sent = runs(priced)
    refused = run_wai("ask", "-m", PRICED, "more")
    assert refused.returncode == 2
    assert "has reached the budget" in refused.stderr and "--force" in refused.stderr
    assert runs(priced) == sent  # nothing was sent
    as_json = run_wai("ask", "--json", "-m", PRICED, "more")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["error"]["exit_status"] == 2
    forced = run_wai("ask", "--force", "-m", PRICED, "more")
    assert forced.returncode == 0, forced.stderr
    assert "--force" in forced.stderr and runs(priced) == sent + 1
    assert budget_of_usage() > 0


def budget_of_usage() -> float:
    today = usage()["today"]
    assert isinstance(today, dict) and today["daily_neurons"] == 0.0001
    return float(today["neurons"])


def test_chat_refuses_a_message_once_the_budget_is_spent(
    priced: WorkersAIServer, isolated_home: Path
) -> None:
    from tests.commands.chat.test_repl import chat
    from wai.commands.chat.session import ChatOptions

    ask("-m", PRICED, "spend something")
    budget(isolated_home, 0.0001)
    sent = runs(priced)
    ran = chat("hello", options=ChatOptions(model=PRICED))
    assert "has reached the budget" in ran.err and runs(priced) == sent
    chat("hello", options=ChatOptions(model=PRICED, force=True))
    assert runs(priced) == sent + 1


@pytest.mark.parametrize(
    ("written", "shown"), [('"lots"', "'lots'"), ("0", "0"), ("true", "true"), ("1e12", "1000000000000.0")]
)
def test_a_bad_budget_is_a_configuration_error(
    server: WorkersAIServer, isolated_home: Path, written: str, shown: str
) -> None:
    (isolated_home / "config.toml").write_text(f"daily_neurons = {written}\n", encoding="utf-8")
    done = run_wai("ask", "-m", PRICED, "hi")
    assert done.returncode == 2 and "daily_neurons" in done.stderr and "Traceback" not in done.stderr
    # The message names the range the value missed (1e12 is positive) and the value as written.
    assert "above 0 and below 1,000,000,000,000" in done.stderr and f"got {shown}" in done.stderr
    assert not server.requests


@pytest.mark.parametrize("span", ["999999999d", "99999999999999999999h", "9999999w"])
def test_a_span_further_back_than_any_date_is_every_turn(isolated_home: Path, span: str) -> None:
    from wai.store.database import Store, TurnData

    with Store(db_path()) as store:
        store.add_turn("01old", TurnData(prompt="q", reply="a", model="m", backend="remote"), source="ask")
    shown = run_wai("logs", "--usage", "--since", span)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage since 0001-01-01 00:00 UTC, by day")
    as_json = json.loads(run_wai("logs", "--usage", "--json", "--since", span).stdout)
    assert sum(row["turns"] for row in as_json["rows"]) == 1


# wai batch: each record's turn is logged as a `wai ask` turn, and the budget is checked for the
# whole batch before its first record is sent.


def test_a_batchs_turns_are_logged_each_as_its_own_conversation(priced: WorkersAIServer) -> None:
    done = run_wai("batch", "-m", PRICED, stdin=b'one\ntwo\n{"prompt": "three"}\n')
    assert done.returncode == 0, done.stderr
    conversations = json.loads(run_wai("logs", "--json", "-n", "0").stdout)
    assert len(conversations) == 3
    turns = logged_turns()
    assert sorted(t["prompt"] for t in turns) == ["one", "three", "two"]
    assert all(t["model"] == PRICED and t["reply"] and t["neurons"] > 0 for t in turns)
    assert usage()["total"]["turns"] == 3
    unlogged = run_wai("batch", "-m", PRICED, "--no-log", stdin=b"four\n")
    assert unlogged.returncode == 0, unlogged.stderr
    assert usage()["total"]["turns"] == 3


def test_a_batch_whose_records_together_may_pass_the_budget_is_warned_of(
    priced: WorkersAIServer, isolated_home: Path
) -> None:
    # One record at most ~18 neurons (100 reply tokens at $2 per M): alone under the budget of 40.
    budget(isolated_home, 40)
    alone = run_wai("batch", "-m", PRICED, "--max-tokens", "100", stdin=b"a\n")
    assert alone.returncode == 0 and "budget" not in alone.stderr
    three = run_wai("batch", "-m", PRICED, "--max-tokens", "100", stdin=b"a\nb\nc\n")
    assert three.returncode == 0, three.stderr
    assert "this batch of 3 records may spend up to" in three.stderr
    assert "could pass the budget of 40" in three.stderr


def test_a_spent_budget_refuses_a_batch_before_anything_is_sent_or_written(
    priced: WorkersAIServer, isolated_home: Path, tmp_path: Path
) -> None:
    ask("-m", PRICED, "spend something")
    budget(isolated_home, 0.0001)
    sent = runs(priced)
    out = tmp_path / "answers.jsonl"
    out.write_text("kept\n")
    refused = run_wai("batch", "-m", PRICED, "-o", str(out), stdin=b"a\nb\n")
    assert refused.returncode == 2
    assert "has reached the budget" in refused.stderr and "--force" in refused.stderr
    assert runs(priced) == sent and out.read_text() == "kept\n"
    forced = run_wai("batch", "-m", PRICED, "-o", str(out), "--force", stdin=b"a\nb\n")
    assert forced.returncode == 0, forced.stderr
    assert runs(priced) == sent + 2


def test_a_free_model_costs_nothing_in_neurons_too_not_an_unknown(server: WorkersAIServer) -> None:
    free = "@cf/meta/llama-3.2-1b-instruct"
    server.simulation.catalog = [search_result(free, window=32000, price=price_listing(0, 0))]
    assert run_wai("models", "--refresh").returncode == 0
    ask("-m", free, "one")
    shown = run_wai("logs", "--usage", "--by", "model")
    assert shown.returncode == 0, shown.stderr
    row = next(line.split() for line in shown.stdout.splitlines() if line.startswith(free))
    assert row[-2:] == ["$0", "0.0"]  # a known cost of nothing: "-" is for what is not known
    cid = str(json.loads(run_wai("logs", "--json").stdout)[0]["id"])
    exported = run_wai("logs", "--export", "md", cid).stdout
    assert "1 turn: " in exported and "$0, 0.0 neurons" in exported

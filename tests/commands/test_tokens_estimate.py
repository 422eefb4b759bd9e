"""The estimate through the installed `wai`: `wai tokens` says how it is made, and `wai tokens`
and `wai ask` agree on every kind of text, one token under and at the input limit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_wai
from tests.support.estimate_table import KINDS, corpus_text
from tests.support.vocab_fixture import vocab_cache, vocab_home
from wai.conversation import Message
from wai.windows.counters import EstimatedCounter

GEMMA = "@cf/google/gemma-3-12b-it"  # a catalog model of no family wai has a vocabulary for
__all__ = ["vocab_cache", "vocab_home"]

PROSE = "The keepers wrote in a logbook every evening, and most of those books survive."


def test_wai_tokens_says_how_the_estimate_is_made() -> None:
    done = run_wai("tokens", "-m", GEMMA, PROSE)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("~") and "estimated" in lines[0]
    assert lines[2].startswith("an estimate by kind of text: each word, digit, punctuation mark")
    assert "at most 10% low" in lines[2]
    report = json.loads(run_wai("tokens", "--json", "-m", GEMMA, PROSE).stdout)
    assert report["how_estimated"] == lines[2]


def test_an_exact_count_says_nothing_of_the_estimate(vocab_home: Path) -> None:
    done = run_wai("tokens", "-m", "@cf/meta/llama-3.1-8b-instruct", PROSE)
    assert done.returncode == 0, done.stderr
    assert "exact" in done.stdout and "estimate" not in done.stdout
    assert len(done.stdout.splitlines()) == 2


def _windows(limit: int) -> str:
    """Windows whose input limit is `limit`: the whole context leaves room for a reply."""
    return f"context_window = {limit}\nmax_output = 500\ntotal_context = {limit + 1000}\n"


def test_tokens_and_ask_agree_at_the_limit_on_every_kind_of_text(isolated_home: Path) -> None:
    # Each kind's text gets two models: one whose input limit is the estimate, one a token under.
    counts = {kind: EstimatedCounter().count_prompt((Message("user", corpus_text(kind)),)) for kind in KINDS}
    entries = [
        f'[models."@cf/test/{kind}-{side}"]\n{_windows(counts[kind] - (side == "over"))}'
        for kind in KINDS
        for side in ("fits", "over")
    ]
    (isolated_home / "models.toml").write_text("\n".join(entries), encoding="utf-8")
    runs = [
        (command, kind, side) for kind in KINDS for side in ("fits", "over") for command in ("tokens", "ask")
    ]
    argv = [
        ("tokens", "--json", "--no-stdin", "-m", f"@cf/test/{kind}-{side}", corpus_text(kind))
        if command == "tokens"
        else ("ask", "--dry-run", "--no-stdin", "-m", f"@cf/test/{kind}-{side}", corpus_text(kind))
        for command, kind, side in runs
    ]
    done = [run_wai(*args) for args in argv]
    for (command, kind, side), result in zip(runs, done, strict=True):
        where = f"{command} {kind} {side}: {result.stderr}"
        assert result.returncode == (0 if side == "fits" else 3), where
        if command == "tokens":
            report = json.loads(result.stdout)
            assert (report["tokens"], report["fits"], report["exact"]) == (
                counts[kind],
                side == "fits",
                False,
            ), where
        elif side == "fits":
            plan = json.loads(result.stdout)
            assert (plan["prompt_tokens"], plan["exact"]) == (counts[kind], False), where
        else:
            assert f"the prompt is ~{counts[kind]} tokens" in result.stderr, where

"""The estimate through `wai`: `wai tokens` says how it is made, `wai tokens` and `wai ask` agree on
every kind of text, one token under and at the input limit, and a prompt estimated close to the
window of a server that cuts long prompts silently (ollama) is warned of."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_wai
from tests.support.estimate_table import KINDS, corpus_text
from tests.support.openai_server import base_url, openai_server
from tests.support.vocab_fixture import vocab_cache, vocab_home
from tests.support.workers_ai_server import Reply, WorkersAIServer
from wai.conversation import Message
from wai.tokens.counters import EstimatedCounter

GEMMA = "@cf/google/gemma-3-12b-it"  # a catalog model of no family wai has a vocabulary for
__all__ = ["vocab_cache", "vocab_home"]

PROSE = "The keepers wrote in a logbook every evening, and most of those books survive."


def test_wai_tokens_says_how_the_estimate_is_made() -> None:
    done = run_wai("tokens", "-m", GEMMA, PROSE)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("~") and "estimated" in lines[0]
    assert lines[2].startswith("an estimate by kind of text: each word (English or another language")
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


# --- a server that cuts a long prompt silently ---------------------------------------------------

SERVED = "org/model-a"
OLLAMA_SHOW = Reply.json({"parameters": "num_ctx 2048\ntemperature 0.7", "model_info": {}})


def _words(tokens: int) -> str:
    """A text the estimate counts, templated as one user message, as `tokens`."""
    text = " ".join(["so"] * (tokens - EstimatedCounter().count_prompt((Message("user", ""),))))
    assert EstimatedCounter().count_prompt((Message("user", text),)) == tokens
    return text


def _provider(home: Path, server: WorkersAIServer, extra: str = "") -> None:
    (home / "config.toml").write_text(
        f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(server)}"\n{extra}', encoding="utf-8"
    )


def test_a_prompt_estimated_close_to_an_ollama_window_is_warned_of(isolated_home: Path) -> None:
    model = f"eng:{SERVED}"
    with openai_server("plain", models={SERVED: 2048}, routes={"POST /api/show": OLLAMA_SHOW}) as server:
        _provider(isolated_home, server)
        limit = json.loads(run_wai("tokens", "--json", "-m", model, "hi").stdout)["input_limit"]
        close, far = _words(limit - limit // 20), _words(limit - limit // 5)
        counted = run_wai("tokens", "--json", "-m", model, close)
        planned = run_wai("ask", "--dry-run", "-m", model, close)
        sent = run_wai("ask", "--json", "-m", model, close)
        quiet = [run_wai(*args, "-m", model, far) for args in (("tokens",), ("ask", "--dry-run"), ("ask",))]
    risk = (
        f"the prompt is ~{limit - limit // 20} tokens by estimate, within 10% of the {limit} {model} "
        "may take, and ollama cuts a longer prompt without an error"
    )
    for run in (counted, planned, sent):
        assert run.returncode == 0, run.stderr
        assert run.stderr.count(risk) == 1, run.stderr
    assert any(risk in warning for warning in json.loads(sent.stdout)["warnings"])
    for run in quiet:
        assert run.returncode == 0 and "cuts a longer prompt" not in run.stderr, run.stderr
    assert server.violations == []


def test_a_server_not_known_to_cut_prompts_gets_no_such_warning(isolated_home: Path) -> None:
    model = f"eng:{SERVED}"
    with openai_server("plain", models={SERVED: 2048}) as server:
        _provider(isolated_home, server, 'tokenizer = "none"\n')
        (isolated_home / "models.toml").write_text(
            f'[models."{model}"]\ncontext_window = 2000\nmax_output = 48\n', encoding="utf-8"
        )
        run = run_wai("tokens", "-m", model, _words(1990))
    assert run.returncode == 0, run.stderr
    assert "cuts a longer prompt" not in run.stderr

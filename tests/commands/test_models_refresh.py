"""`wai models --refresh`: the account's live catalog read page by page, stored, and used by `wai ask`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.vocab_fixture import vocab_cache, vocab_home
from tests.support.workers_ai_server import (
    RecordedRequest,
    Reply,
    Simulation,
    WorkersAIServer,
    catalog_recount,
    search_result,
)
from wai.store.catalogs import output_window

__all__ = ["vocab_cache", "vocab_home"]

NEW = "@cf/meta/llama-3.9-8b-instruct"  # a model the built-in catalog lacks; Llama 3 by its name
NEW_WINDOW = 400
CATALOG = [
    search_result(
        NEW, window=NEW_WINDOW, function_calling=True, description="A newer Llama. Second sentence."
    ),
    search_result("@cf/openai/gpt-oss-120b", window=128000, reasoning=True, function_calling=True),
    search_result("@cf/acme/thinker-9b", window=32000, reasoning=True),
    search_result("@cf/acme/leaving-1b", window=8000, planned_deprecation_date="2026-01-15"),
    search_result("@cf/acme/staying-1b", window=8000, planned_deprecation_date="2099-01-01"),
    search_result("@cf/acme/windowless-7b"),  # no context_window published
    search_result("@cf/acme/whisper-like", window=448, task="Automatic Speech Recognition"),
    search_result("@cf/qwen/qwen3-99b-a9b", window=16000),
]
TEXT_MODELS = 7  # CATALOG without the speech model


def env_for(server: WorkersAIServer) -> dict[str, str]:
    return server.client_env("tok-refresh")


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    simulation = Simulation(reply_tokens=5, catalog=CATALOG, max_per_page=3, page_info=False)
    with WorkersAIServer(simulation) as running:
        yield running


def searches(server: WorkersAIServer) -> list[RecordedRequest]:
    return [r for r in server.requests if "/ai/models/search" in r.path]


def runs(server: WorkersAIServer) -> list[RecordedRequest]:
    return [r for r in server.requests if "/ai/run/" in r.path]


def refresh(server: WorkersAIServer) -> None:
    done = run_wai("models", "--refresh", env=env_for(server))
    assert done.returncode == 0, done.stderr


def rows(done_stdout: str) -> dict[str, dict[str, object]]:
    return {row["id"]: row for row in json.loads(done_stdout)["models"]}


def test_every_page_is_read_when_the_server_caps_per_page_without_saying_so(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    done = run_wai("models", "--refresh", "--json", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert f"read {TEXT_MODELS} text-generation models" in done.stderr
    # 7 listed, 3 a page: two full pages, then a short one ends it.
    pages = searches(server)
    assert [r.path.split("page=")[1].split("&")[0] for r in pages] == ["1", "2", "3"]
    assert all("per_page=50" in r.path and "task=Text+Generation" in r.path for r in pages)
    assert all(r.headers["authorization"] == "Bearer tok-refresh" for r in pages)
    listed = rows(done.stdout)
    assert NEW in listed and "@cf/acme/thinker-9b" in listed
    assert "@cf/acme/windowless-7b" not in listed  # nothing says what fits it
    assert "1 without a published window left out" in done.stderr
    stored = json.loads((isolated_home / "catalogs" / "workers-ai.json").read_text())
    assert len(stored["models"]) == TEXT_MODELS
    assert json.loads(done.stdout)["refreshed"][0]["models"] == TEXT_MODELS


def test_with_result_info_the_total_count_ends_the_paging(server: WorkersAIServer) -> None:
    server.simulation.page_info = True
    server.simulation.catalog = CATALOG[:6]  # 6 text models, exactly two full pages
    refresh(server)
    assert len(searches(server)) == 2  # total_count said there is no third page


def test_a_refreshed_model_gets_its_window_a_family_and_the_documented_output_window(
    server: WorkersAIServer,
) -> None:
    refresh(server)
    listed = rows(run_wai("models", "--json").stdout)
    new = listed[NEW]
    assert (new["context_window"], new["total_context"]) == (NEW_WINDOW, NEW_WINDOW)
    assert new["max_output"] == output_window(NEW_WINDOW) == NEW_WINDOW // 2
    assert new["family"] == "llama-3"
    assert new["capabilities"] == ["function_calling"]
    assert new["description"] == "A newer Llama."
    assert listed["@cf/qwen/qwen3-99b-a9b"]["family"] == "qwen2"
    thinker = listed["@cf/acme/thinker-9b"]
    assert thinker["family"] is None and thinker["capabilities"] == ["reasoning"]
    assert thinker["reasoning"] is True
    assert thinker["max_output"] == 16000  # half of 32000: a reasoning model's cap is 32768
    assert listed["@cf/qwen/qwen3-99b-a9b"]["max_output"] == 8000  # half of 16000
    assert (
        listed["@cf/acme/staying-1b"]["max_output"] == 4000
        and listed["@cf/acme/staying-1b"]["reasoning"] is False
    )
    # A model the built-in catalog knows keeps its own entry where the refresh says nothing new.
    oss = listed["@cf/openai/gpt-oss-120b"]
    assert oss["description"] == "OpenAI gpt-oss 120B, open weights, reasoning"


def test_a_past_planned_retirement_puts_a_model_with_the_retired_ones(server: WorkersAIServer) -> None:
    refresh(server)
    done = run_wai("models")  # a pipe
    lines = done.stdout.splitlines()
    split = lines.index("retired on Workers AI (the local backend still runs those with a gguf file):")
    current, retired = lines[:split], lines[split + 1 :]
    assert any(line.startswith("@cf/acme/staying-1b ") for line in current)
    leaving = next(line for line in retired if line.startswith("@cf/acme/leaving-1b "))
    assert "retired on Workers AI since 2026-01-15" in leaving
    assert not any(line.startswith("@cf/acme/leaving-1b ") for line in current)


def test_the_users_models_toml_wins_over_the_refresh(server: WorkersAIServer, isolated_home: Path) -> None:
    refresh(server)
    (isolated_home / "models.toml").write_text(f'[models."{NEW}"]\nmax_output = 50\n')
    new = rows(run_wai("models", "--json").stdout)[NEW]
    assert (new["context_window"], new["max_output"]) == (NEW_WINDOW, 50)


def test_offline_the_last_refresh_serves_and_models_says_how_old_it_is(server: WorkersAIServer) -> None:
    before = run_wai("models")
    assert "Workers AI models: the built-in list (never refreshed" in before.stdout
    refresh(server)
    server.stop()  # offline from here on
    done = run_wai("models", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert "Workers AI models: refreshed less than a minute ago (" in done.stdout
    assert f"from {server.base_url}, {TEXT_MODELS} models" in done.stdout
    assert any(line.startswith(NEW + " ") for line in done.stdout.splitlines())


def test_a_failed_refresh_leaves_the_stored_catalog_whole(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    refresh(server)
    stored = isolated_home / "catalogs" / "workers-ai.json"
    before = stored.read_bytes()
    page = Reply.json(
        {"result": CATALOG[:3], "result_info": {"page": 1, "per_page": 3, "total_count": 7}, "success": True}
    )
    server.script(page, Reply.text(200, "<html>upstream broke</html>"))
    done = run_wai("models", "--refresh", env=env_for(server))
    assert done.returncode == 1
    assert (
        "cannot refresh the catalog: Workers AI sent a model list wai cannot read: upstream broke"
        in done.stderr
    )
    assert stored.read_bytes() == before
    assert any(line.startswith(NEW + " ") for line in done.stdout.splitlines())  # the last refresh serves
    assert list(stored.parent.iterdir()) == [stored]  # no half-written file left beside it
    server.script(page, Reply.text(200, "<html>upstream broke</html>"))
    scripted = run_wai("models", "--refresh", "--json", env=env_for(server))
    assert scripted.returncode == 1
    document = json.loads(scripted.stdout)  # one document: the catalog wai had, and why it is not new
    assert document["error"]["code"] == "backend" and document["error"]["exit_status"] == 1
    assert "upstream broke" in document["error"]["message"]
    assert any(row["id"] == NEW for row in document["models"])


def test_refreshing_without_credentials_says_what_to_set_and_still_lists(isolated_home: Path) -> None:
    done = run_wai("models", "--refresh")
    assert done.returncode == 2
    assert "cannot refresh the catalog: Workers AI needs credentials" in done.stderr
    assert "CLOUDFLARE_API_TOKEN" in done.stderr
    assert "@cf/meta/llama-3.1-8b-instruct-fp8" in done.stdout
    assert not (isolated_home / "catalogs").exists()


def test_a_wrong_token_on_refresh_is_the_usual_one_line(server: WorkersAIServer) -> None:
    server.simulation.api_token = "the-right-one"
    done = run_wai("models", "--refresh", env=env_for(server))
    assert done.returncode == 2
    assert "rejected the API token" in done.stderr and "tok-refresh" not in done.stderr


def test_a_token_a_header_cannot_carry_is_refused_on_refresh_too(server: WorkersAIServer) -> None:
    done = run_wai("models", "--refresh", env={**env_for(server), "CLOUDFLARE_API_TOKEN": "tok\u200b"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "cannot be sent in an HTTP header (U+200B, character 4 of 4)" in done.stderr
    assert searches(server) == []


def test_one_unusable_model_id_is_left_out_and_the_rest_are_kept(server: WorkersAIServer) -> None:
    server.simulation.catalog = [*CATALOG, search_result("@cf/acme/\x1b]0;PWNED\x07evil", window=8000)]
    refresh(server)
    listed = run_wai("models", "--json", env=env_for(server))
    assert listed.returncode == 0, listed.stderr
    assert "not a usable id" not in listed.stderr
    assert NEW in rows(listed.stdout)
    asked = run_wai("ask", "--dry-run", "-m", NEW, "hi", env=env_for(server))
    assert asked.returncode == 0, asked.stderr


def test_a_damaged_store_is_noted_and_the_built_in_catalog_serves(isolated_home: Path) -> None:
    store = isolated_home / "catalogs"
    store.mkdir()
    (store / "workers-ai.json").write_text("{not json")
    done = run_wai("models")
    assert done.returncode == 0
    assert "workers-ai.json cannot be read" in done.stderr and "--refresh" in done.stderr
    assert "@cf/meta/llama-3.1-8b-instruct-fp8" in done.stdout
    asked = run_wai("ask", "--dry-run", "-m", "@cf/meta/llama-3.1-8b-instruct-fp8", "hi")
    assert asked.returncode == 0, asked.stderr


# -- a model only the refresh knows, through `wai ask` -----------------------------------------


@pytest.fixture
def recounting(server: WorkersAIServer, vocab_home: Path) -> WorkersAIServer:
    """The server recounts every run body with the model's vocabulary, against the catalog wai reads."""
    server.simulation.recount = catalog_recount()
    return server


def test_a_refreshed_model_over_its_published_window_is_refused_and_nothing_sent(
    recounting: WorkersAIServer,
) -> None:
    refresh(recounting)
    done = run_wai("ask", "-m", NEW, "-", stdin=("word " * NEW_WINDOW).encode(), env=env_for(recounting))
    assert done.returncode == 3, done.stderr
    assert f"{NEW} accepts at most" in done.stderr or f"{NEW}'s {NEW_WINDOW}-token context" in done.stderr
    assert runs(recounting) == []


def test_a_refreshed_model_with_a_short_prompt_gets_max_tokens_within_its_window(
    recounting: WorkersAIServer,
) -> None:
    refresh(recounting)
    done = run_wai("ask", "-m", NEW, "what is a window?", env=env_for(recounting))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "token1 token2 token3 token4 token5\n"
    (sent,) = runs(recounting)
    (recounted,) = [tokens for request, tokens in recounting.recounts if request is sent]
    max_tokens = sent.json["max_tokens"]
    assert max_tokens == output_window(NEW_WINDOW)
    assert recounted + max_tokens <= NEW_WINDOW
    assert recounting.violations == []


def test_a_long_prompt_leaves_a_refreshed_model_less_than_its_output_window(
    recounting: WorkersAIServer,
) -> None:
    refresh(recounting)
    prompt = "word " * 300  # more than half the window: the window, not max_output, bounds the reply
    done = run_wai("ask", "-m", NEW, "-", stdin=prompt.encode(), env=env_for(recounting))
    assert done.returncode == 0, done.stderr
    (sent,) = runs(recounting)
    (recounted,) = [tokens for request, tokens in recounting.recounts if request is sent]
    assert sent.json["max_tokens"] == NEW_WINDOW - recounted < output_window(NEW_WINDOW)
    assert recounting.violations == []


# -- listings wai cannot take as they are ----------------------------------------------------


def test_a_listing_longer_than_the_page_limit_is_said_to_be_cut_and_nothing_is_stored(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    refresh(server)
    stored = isolated_home / "catalogs" / "workers-ai.json"
    before = stored.read_bytes()
    # More pages than wai reads (an endless listing looks the same): every page full, every name new.
    server.simulation.catalog = [search_result(f"@cf/acme/model-{n}", window=8000) for n in range(700)]
    for page_info in (False, True):
        server.simulation.page_info = page_info
        done = run_wai("models", "--refresh", env=env_for(server))
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert "the list was cut" in done.stderr and "after 200 pages" in done.stderr
        assert "read " not in done.stderr  # no success reported
        assert stored.read_bytes() == before  # the last whole list stays
    assert any(line.startswith(NEW + " ") for line in done.stdout.splitlines())


ABSURD = {
    "@cf/acme/huge-window": {"context_window": "1" + "0" * 40},
    "@cf/acme/negative-window": {"context_window": "-4096"},
    "@cf/acme/wordy-window": {"context_window": "lots"},
    "@cf/acme/fractional-window": {"context_window": "4096.5"},
    "@cf/acme/output-over-total": {"max_total_tokens": "8000", "max_output_tokens": "9000"},
    "@cf/acme/input-over-total": {"max_total_tokens": "8000", "max_input_tokens": "8001"},
    "@cf/acme/negative-output": {"context_window": "8000", "max_output_tokens": "-1"},
    "@cf/openai/gpt-oss-120b": {"context_window": "9" * 41},  # one the built-in catalog knows
}


def test_absurd_figures_in_a_listing_are_refused_per_model_with_a_warning_and_not_stored(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    absurd = [
        {**search_result(name), "properties": [{"property_id": k, "value": v} for k, v in figures.items()]}
        for name, figures in ABSURD.items()
    ]
    server.simulation.catalog = [*CATALOG, *absurd]
    done = run_wai("models", "--refresh", "--json", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("wai: warning:")]
    for name in ABSURD:
        (said,) = [line for line in warnings if name + " " in line or name + ":" in line]
        assert "left out" in said, said
    assert "1" + "0" * 40 in "\n".join(warnings)  # the figure itself is named
    stored = json.loads((isolated_home / "catalogs" / "workers-ai.json").read_text())
    assert {m["id"] for m in stored["models"]}.isdisjoint(ABSURD)
    assert len(stored["models"]) == TEXT_MODELS - 1  # the rest are kept (gpt-oss was listed twice)
    listed = rows(done.stdout)
    assert not set(ABSURD) - {"@cf/openai/gpt-oss-120b"} & set(listed)
    assert listed["@cf/openai/gpt-oss-120b"]["total_context"] == 128000  # the built-in windows stay
    asked = run_wai("ask", "--dry-run", "-m", NEW, "hi", env=env_for(server))
    assert asked.returncode == 0, asked.stderr


def test_a_retired_models_suggested_successor_is_of_its_own_family_or_none(
    server: WorkersAIServer,
) -> None:
    server.simulation.catalog = [
        *CATALOG,
        # Llama 3 by its name: a current Llama 3 follows it.
        search_result("@cf/meta/llama-3.0-8b-old", window=8000, planned_deprecation_date="2026-01-01"),
        # Another family of the same first word (Llama 4, no Llama 3 vocabulary): no Llama 4 is
        # current, so none.
        search_result(
            "@cf/meta/llama-4-scout-17b-16e-instruct", window=131000, planned_deprecation_date="2026-01-01"
        ),
        # Qwen2's vocabulary, but not a Qwen: no model of its family and name is current.
        search_result(
            "@cf/deepseek-ai/deepseek-r1-distill-qwen-32b",
            window=80000,
            planned_deprecation_date="2026-01-01",
        ),
    ]
    refresh(server)
    listed = rows(run_wai("models", "--json").stdout)
    old = listed["@cf/meta/llama-3.0-8b-old"]
    assert old["retired"] and old["family"] == "llama-3"
    assert listed[str(old["use_instead"])]["family"] == "llama-3"
    assert listed["@cf/meta/llama-4-scout-17b-16e-instruct"]["retired"]
    assert listed["@cf/meta/llama-4-scout-17b-16e-instruct"]["use_instead"] is None
    assert listed["@cf/deepseek-ai/deepseek-r1-distill-qwen-32b"]["use_instead"] is None
    server.script(Reply.error(410, 5028, "AiError: Model has been deprecated"))
    refused = run_wai("ask", "-m", "@cf/meta/llama-4-scout-17b-16e-instruct", "hi", env=env_for(server))
    assert refused.returncode == 2
    assert "Workers AI retired @cf/meta/llama-4-scout-17b-16e-instruct" in refused.stderr
    assert " use " not in refused.stderr and "`wai models --refresh` lists current models" in refused.stderr


def test_the_default_model_comes_from_the_list_of_the_server_wai_now_points_at(
    server: WorkersAIServer,
) -> None:
    refresh(server)  # a loopback server, not Cloudflare's: its list gives the default
    listed = run_wai("models", "--json", env=env_for(server))
    assert json.loads(listed.stdout)["default_model"] == NEW
    # Pointed at another server since, without a refresh: the first server's list says nothing of
    # what this one serves, so it is not the default's source.
    with WorkersAIServer(Simulation(catalog=CATALOG[1:])) as other:
        moved = run_wai("models", env=env_for(other))
        dry = run_wai("ask", "--dry-run", "--json", "--no-stdin", "hi", env=env_for(other))
    assert moved.returncode == 0, moved.stderr
    line = moved.stdout.split("default model:", 1)[1].splitlines()[0]
    assert server.base_url not in line and NEW not in line
    assert json.loads(dry.stdout)["model"] == "@cf/meta/llama-3.1-8b-instruct-fp8"
    # The same server with a trailing slash is the same server.
    again = run_wai("models", "--json", env={**env_for(server), "CLOUDFLARE_BASE_URL": server.base_url + "/"})
    assert json.loads(again.stdout)["default_model"] == NEW


def test_a_total_count_below_what_the_pages_hold_is_not_taken_for_the_end(isolated_home: Path) -> None:
    # result_info says 3 models, yet the first page holds 4 and more pages follow: the total is
    # wrong, and stopping at it would keep a cut list as if it were the whole one.
    pages = [[search_result(f"@cf/acme/m{page}-{i}", window=4096) for i in range(4)] for page in range(3)]
    pages.append([search_result("@cf/acme/last", window=4096)])
    with WorkersAIServer(Simulation()) as server:
        server.script(
            *(Reply.json({"success": True, "result": p, "result_info": {"total_count": 3}}) for p in pages)
        )
        done = run_wai("models", "--refresh", "--json", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert "read 13 text-generation models" in done.stderr
    assert "@cf/acme/last" in rows(done.stdout)


def test_a_named_successor_retired_since_is_not_suggested(server: WorkersAIServer) -> None:
    # The built-in catalog names @cf/meta/llama-3.1-8b-instruct-fp8 as the successor of the retired
    # Llama 2 models; a refresh that says it is retired too makes it no current model to use.
    fp8 = "@cf/meta/llama-3.1-8b-instruct-fp8"
    server.simulation.catalog = [
        *CATALOG,
        search_result(fp8, window=8000, planned_deprecation_date="2026-01-01"),
    ]
    refresh(server)
    listed = rows(run_wai("models", "--json").stdout)
    assert listed[fp8]["retired"]
    for model, row in listed.items():
        if row["use_instead"] is not None:
            assert not listed[str(row["use_instead"])]["retired"], (model, row["use_instead"])
    assert listed["@cf/meta/llama-2-7b-chat-fp16"]["use_instead"] != fp8

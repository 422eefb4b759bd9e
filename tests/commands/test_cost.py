"""What a turn costs, and prompt caching on Workers AI: the installed `wai` against the loopback
server, whose model search lists prices and whose usage reports cached prompt tokens for a
conversation's requests that carry the same `x-session-affinity`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.openai_server import base_url, openai_server
from tests.support.workers_ai_server import WorkersAIServer, price_listing, search_result

PRICED = "@cf/meta/llama-3.1-8b-instruct-fp8"
UNPRICED = "@cf/meta/llama-2-7b-chat-int8"
KIMI = "@cf/moonshotai/kimi-k2.6"
# USD per million input, cached input and output tokens, as the listing gives them.
INPUT, CACHED, OUTPUT = 0.3, 0.05, 2.0


def dollars(prompt: int, cached: int, completion: int, rates: tuple[float, float, float]) -> float:
    rate_in, rate_cached, rate_out = rates
    return ((prompt - cached) * rate_in + cached * rate_cached + completion * rate_out) / 1_000_000


@pytest.fixture
def priced(server: WorkersAIServer) -> WorkersAIServer:
    server.simulation.prompt_cache = True
    server.simulation.catalog = [
        search_result(PRICED, window=32000, price=price_listing(INPUT, OUTPUT, CACHED)),
        search_result(UNPRICED, window=4096),
    ]
    refreshed = run_wai("models", "--refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    return server


def ask_json(*args: str) -> dict[str, object]:
    done = run_wai("ask", "--json", *args)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert isinstance(document, dict)
    return document


def affinities(server: WorkersAIServer) -> list[str | None]:
    return [r.headers.get("x-session-affinity") for r in server.requests if "/ai/run/" in r.path]


def test_a_turn_costs_the_listed_price_with_cached_tokens_at_their_rate(priced: WorkersAIServer) -> None:
    first = ask_json("-m", PRICED, "what is the capital of France?")
    usage = first["usage"]
    assert isinstance(usage, dict) and usage["cached_tokens"] == 0
    cost = first["cost"]
    assert isinstance(cost, dict)
    expected = dollars(usage["prompt_tokens"], 0, usage["completion_tokens"], (INPUT, CACHED, OUTPUT))
    assert cost["usd"] == pytest.approx(expected)
    assert cost["neurons"] == pytest.approx(expected / 0.011 * 1000, rel=1e-4)

    second = ask_json("-c", "and of Italy?")
    usage2 = second["usage"]
    assert isinstance(usage2, dict)
    # The server held the first request's prompt: it is the cached part of the second one.
    assert usage2["cached_tokens"] == usage["prompt_tokens"] > 0
    cost2 = second["cost"]
    assert isinstance(cost2, dict)
    expected2 = dollars(
        usage2["prompt_tokens"], usage2["cached_tokens"], usage2["completion_tokens"], (INPUT, CACHED, OUTPUT)
    )
    assert cost2["usd"] == pytest.approx(expected2)
    uncached = dollars(usage2["prompt_tokens"], 0, usage2["completion_tokens"], (INPUT, CACHED, OUTPUT))
    assert cost2["usd"] < uncached

    # The transcript keeps the figures.
    kept = json.loads(run_wai("logs", "--json", "--cid", run_latest_id()).stdout)
    turns = kept["turns"]
    assert [t["cached_tokens"] for t in turns] == [0, usage["prompt_tokens"]]
    assert turns[1]["cost_usd"] == pytest.approx(expected2)
    assert turns[1]["neurons"] == pytest.approx(expected2 / 0.011 * 1000, rel=1e-4)


def run_latest_id() -> str:
    listed = json.loads(run_wai("logs", "--json").stdout)
    return str(listed[0]["id"])


def test_the_footer_says_the_cost_neurons_and_cached_tokens(priced: WorkersAIServer) -> None:
    assert run_wai("ask", "-m", PRICED, "hello there").returncode == 0
    done = run_wai("ask", "-c", "--stats", "and again")
    assert done.returncode == 0, done.stderr
    footer = done.stderr.strip().splitlines()[-1]
    assert "cached)" in footer and " neurons" in footer and "$0.0000" in footer, footer


def test_jsonl_carries_cached_tokens_and_the_cost(priced: WorkersAIServer) -> None:
    assert run_wai("ask", "-m", PRICED, "hello there").returncode == 0
    done = run_wai("ask", "-c", "--jsonl", "and again")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    usage = next(e for e in events if e["type"] == "usage")
    finish = events[-1]
    assert finish["type"] == "finish" and usage["cached_tokens"] > 0
    assert finish["usage"]["cached_tokens"] == usage["cached_tokens"]
    assert finish["cost"]["usd"] > 0 and finish["cost"]["neurons"] > 0


def test_a_model_without_a_price_shows_no_cost(priced: WorkersAIServer) -> None:
    document = ask_json("-m", UNPRICED, "hi")
    assert document["cost"] is None
    done = run_wai("ask", "-m", UNPRICED, "--stats", "hi")
    assert "$" not in done.stderr and "neurons" not in done.stderr
    kept = json.loads(run_wai("logs", "--json", "--cid", run_latest_id()).stdout)
    assert kept["turns"][0]["cost_usd"] is None and kept["turns"][0]["neurons"] is None


def test_the_built_in_catalog_prices_kimi_as_cloudflare_documents_it(server: WorkersAIServer) -> None:
    document = ask_json("-m", KIMI, "hi")
    usage = document["usage"]
    assert isinstance(usage, dict)
    cost = document["cost"]
    assert isinstance(cost, dict)
    assert cost["usd"] == pytest.approx(
        dollars(usage["prompt_tokens"], 0, usage["completion_tokens"], (0.95, 0.16, 4.0))
    )


def test_models_toml_sets_a_price_and_a_bad_one_is_refused(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    models = isolated_home / "models.toml"
    models.write_text(f'[models."{UNPRICED}"]\nprice = {{ input = 1.0, output = 3.0 }}\n', encoding="utf-8")
    document = ask_json("-m", UNPRICED, "hi")
    usage = document["usage"]
    cost = document["cost"]
    assert isinstance(usage, dict) and isinstance(cost, dict)
    assert cost["usd"] == pytest.approx(
        dollars(usage["prompt_tokens"], 0, usage["completion_tokens"], (1, 1, 3))
    )
    models.write_text(
        f'[models."{UNPRICED}"]\nprice = {{ input = "cheap", output = 3.0 }}\n', encoding="utf-8"
    )
    done = run_wai("ask", "-m", UNPRICED, "hi")
    assert done.returncode == 2
    assert "key 'price'" in done.stderr and "'input'" in done.stderr and "Traceback" not in done.stderr


def test_one_affinity_per_conversation_across_turns_and_processes(priced: WorkersAIServer) -> None:
    ask_json("-m", PRICED, "one")
    ask_json("-c", "two")
    first_id = run_latest_id()
    ask_json("-m", PRICED, "another conversation")
    ask_json("--cid", first_id, "three")
    one, two, other, three = affinities(priced)
    assert one and one == two == three
    assert other and other != one
    # Derived from the conversation, never the conversation id (or anything of the user) itself.
    assert first_id not in one and len(one) == 32


def test_chat_sends_one_affinity_until_clear(priced: WorkersAIServer) -> None:
    from tests.commands.chat.test_repl import chat
    from wai.commands.chat.session import ChatOptions

    chat("first", "second", "/clear", "third", options=ChatOptions(model=PRICED))
    first, second, third = affinities(priced)
    assert first and first == second and third and third != first


@pytest.mark.parametrize("asked", [True, False])
def test_an_openai_compatible_provider_gets_the_affinity_only_when_its_table_asks(
    isolated_home: Path, asked: bool
) -> None:
    with openai_server("vllm", models={"org/m": 4096}) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\n'
            f"session_affinity = {'true' if asked else 'false'}\n",
            encoding="utf-8",
        )
        assert run_wai("ask", "-m", "eng:org/m", "hi").returncode == 0
        assert run_wai("ask", "-c", "again").returncode == 0
        chats = [r for r in srv.requests if r.path.endswith("/chat/completions")]
    values = [r.headers.get("x-session-affinity") for r in chats]
    if asked:
        assert values[0] and values[0] == values[1]
    else:
        assert values == [None, None]


def _as_text(listing: list[dict[str, object]], form: str) -> object:
    if form == "json text":  # the property's value as a string holding the JSON list
        return json.dumps(listing)
    return [{**item, "price": f"${item['price']}"} for item in listing]  # "$0.3"


@pytest.mark.parametrize("form", ["json text", "dollar strings"])
def test_a_price_listed_as_text_is_read_as_the_same_price(server: WorkersAIServer, form: str) -> None:
    # A property's value is usually a string; a price written so was no price at all.
    listing = price_listing(INPUT, OUTPUT, CACHED)
    server.simulation.catalog = [search_result(PRICED, window=32000, price=_as_text(listing, form))]
    assert run_wai("models", "--refresh").returncode == 0
    document = ask_json("-m", PRICED, "what is the capital of France?")
    usage, cost = document["usage"], document["cost"]
    assert isinstance(usage, dict) and isinstance(cost, dict), document
    expected = dollars(usage["prompt_tokens"], 0, usage["completion_tokens"], (INPUT, CACHED, OUTPUT))
    assert cost["usd"] == pytest.approx(expected)

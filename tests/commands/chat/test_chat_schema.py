"""`wai chat`'s /schema: replies held to a JSON schema until /schema off."""

from __future__ import annotations

import json

import pytest

from tests.commands.chat.test_repl import FP16, chat
from tests.support.tiny_gguf import TinyModel
from tests.support.workers_ai_server import WorkersAIServer
from wai.commands.chat.session import ChatOptions
from wai.sampling import Sampling
from wai.schema import load_schema

# Under a grammar the tiny model's own script is ruled out and the tokens left are alike: sampling
# among them would write a different (and perhaps over-long) reply each run.
GREEDY = Sampling(temperature=0)


def test_schema_holds_local_replies_until_it_is_turned_off(tiny_models: dict[str, TinyModel]) -> None:
    pytest.importorskip("llama_cpp")
    options = ChatOptions(
        model=str(tiny_models["q8_0"].path), backend="local", max_tokens=60, sampling=GREEDY
    )
    ran = chat("/schema", "/schema ok bool", "/schema", "hello", "/schema off", "hello", options=options)
    assert ran.code == 0, ran.err
    assert "no schema: replies are free text" in ran.out
    assert 'replies are JSON held to: {"type": "object"' in ran.out
    held = [line for line in ran.out.splitlines() if line.startswith('{"ok"')]
    assert len(held) == 1 and json.loads(held[0])["ok"] in (True, False)
    assert ran.out.count(tiny_models["q8_0"].script) == 1  # free text again after /schema off


def test_schema_on_the_command_line_and_multi(tiny_models: dict[str, TinyModel]) -> None:
    pytest.importorskip("llama_cpp")
    wanted = load_schema("ok bool", multi_items=True)
    options = ChatOptions(
        model=str(tiny_models["q8_0"].path), backend="local", max_tokens=60, sampling=GREEDY, schema=wanted
    )
    ran = chat("hello", options=options)
    assert ran.code == 0, ran.err
    line = next(line for line in ran.out.splitlines() if line.startswith("{"))
    assert isinstance(json.loads(line)["items"], list)


def test_a_bad_schema_or_a_model_without_json_mode_is_one_line_and_nothing_is_sent(
    server: WorkersAIServer,
) -> None:
    ran = chat('/schema {"type": "int"}', "/schema name", "hello", options=ChatOptions(model=FP16))
    assert "wai: error: /schema is not valid JSON Schema (Draft 2020-12): at /type" in ran.err
    assert f"wai: error: /schema: {FP16} has no JSON mode on Workers AI" in ran.err  # what was typed
    assert len(server.requests) == 1 and "response_format" not in server.requests[0].json


def test_schema_multi_without_a_spec_and_a_keyword_the_grammar_cannot_hold_are_named_as_typed(
    tiny_models: dict[str, TinyModel],
) -> None:
    pytest.importorskip("llama_cpp")
    options = ChatOptions(
        model=str(tiny_models["q8_0"].path), backend="local", max_tokens=60, sampling=GREEDY
    )
    ran = chat("/schema multi", '/schema {"type": "integer", "minimum": 2}', "/schema", options=options)
    assert ran.code == 0, ran.err
    # "multi" alone is no concise form of one field named "multi".
    assert "wai: error: /schema multi needs a SPEC (e.g. /schema multi name, age int)" in ran.err
    assert "wai: error: /schema: the local backend's grammar cannot hold 'minimum' (at the root)" in ran.err
    assert "no schema: replies are free text" in ran.out

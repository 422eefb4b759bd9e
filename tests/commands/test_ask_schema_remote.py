"""`wai ask --schema` on a provider's OpenAI-compatible server and on Workers AI: the schema goes as
`response_format`, and the reply is still validated before it reaches stdout."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_wai
from tests.support.openai_server import base_url, openai_server
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer, openai_chunks
from wai.schema import load_schema

SPEC = "name, age int"


def _ask(isolated_home: Path, answer: list[str], *args: str) -> tuple[Any, list[dict[str, Any]]]:
    reply = Reply.sse(openai_chunks([], answer))
    with openai_server("plain", models={"org/m": 4096}, routes={"POST /v1/chat/completions": reply}) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\ntokenizer = "none"\n',
            encoding="utf-8",
        )
        done = run_wai("ask", "-m", "eng:org/m", *args, "hi")
        bodies = [r.json for r in srv.requests if r.path.endswith("/chat/completions")]
    return done, bodies


def test_the_schema_goes_as_response_format_and_the_reply_as_one_line(isolated_home: Path) -> None:
    done, bodies = _ask(isolated_home, ['{"name": ', '"Ada",\n "age": 36}'], "--schema", SPEC)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"name": "Ada", "age": 36}\n'
    sent = bodies[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["name"] == "reply"
    assert sent["json_schema"]["schema"]["required"] == ["name", "age"]


def test_a_reply_that_breaks_the_schema_is_exit_4_with_nothing_on_stdout(isolated_home: Path) -> None:
    done, _ = _ask(isolated_home, ['{"name": "Ada", "age": "old"}'], "--schema", SPEC)
    assert done.returncode == 4
    assert done.stdout == ""
    assert "wai: error: the reply breaks the schema at /age: 'old' is not of type 'integer' (rule: type)" in (
        done.stderr
    )
    done, _ = _ask(isolated_home, ['{"name": "Ada", "age": "old"}'], "--schema", SPEC, "--json")
    assert done.returncode == 4
    document = json.loads(done.stdout)
    assert document["text"] == '{"name": "Ada", "age": "old"}' and document["parsed"] is None


def test_without_a_schema_no_response_format_is_sent(isolated_home: Path) -> None:
    done, bodies = _ask(isolated_home, ["plain text"])
    assert done.returncode == 0 and done.stdout == "plain text\n"
    assert "response_format" not in bodies[0]


# Workers AI: JSON mode, on the models that have it

JSON_MODEL = "@cf/meta/llama-3.3-70b-instruct-fp8-fast"


def _workers_ai(server: WorkersAIServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run_wai("ask", *args, "hi", env=server.client_env("tok-schema-0123"))


@pytest.fixture
def workers_ai() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation()) as running:
        yield running


def test_workers_ai_json_mode_is_asked_whole_and_its_object_printed(workers_ai: WorkersAIServer) -> None:
    workers_ai.script(
        Reply.result({"name": "Ada", "age": 36}, usage={"prompt_tokens": 5, "completion_tokens": 9})
    )
    done = _workers_ai(workers_ai, "-m", JSON_MODEL, "--schema", SPEC)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"name": "Ada", "age": 36}\n'
    body = workers_ai.requests[0].json
    assert body["stream"] is False
    assert body["response_format"] == {"type": "json_schema", "json_schema": load_schema(SPEC).document}


def test_workers_ai_object_that_breaks_the_schema_is_exit_4(workers_ai: WorkersAIServer) -> None:
    workers_ai.script(Reply.result({"name": "Ada"}))
    done = _workers_ai(workers_ai, "-m", JSON_MODEL, "--schema", SPEC)
    assert done.returncode == 4 and done.stdout == ""
    assert (
        "the reply breaks the schema at the root: 'age' is a required property (rule: required)"
        in done.stderr
    )


def test_workers_ai_json_mode_unmet_is_its_own_line_exit_4(workers_ai: WorkersAIServer) -> None:
    workers_ai.script(Reply.error(400, 5006, "JSON Mode couldn't be met"))
    done = _workers_ai(workers_ai, "-m", JSON_MODEL, "--schema", SPEC)
    assert done.returncode == 4 and done.stdout == ""
    assert f"wai: error: Workers AI could not hold {JSON_MODEL}'s reply to the schema" in done.stderr


def test_a_workers_ai_model_without_json_mode_is_refused_before_sending(workers_ai: WorkersAIServer) -> None:
    done = _workers_ai(workers_ai, "-m", "@cf/meta/llama-3.1-8b-instruct-fp8", "--schema", SPEC)
    assert done.returncode == 2 and done.stdout == ""
    assert "@cf/meta/llama-3.1-8b-instruct-fp8 has no JSON mode on Workers AI" in done.stderr
    assert JSON_MODEL in done.stderr  # a model that has it is named
    assert workers_ai.requests == []


ITEM_WITH_DEFS = json.dumps(
    {
        "$defs": {"age": {"type": "integer"}},
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"$ref": "#/$defs/age"},
            "kids": {"type": "array", "items": {"$ref": "#"}},
        },
        "required": ["name"],
    }
)


def test_multi_of_a_schema_with_references_is_sent_and_validated_whole(isolated_home: Path) -> None:
    item = '{"name": "Ada", "age": 36, "kids": [{"name": "Bo", "age": 2}]}'
    done, bodies = _ask(isolated_home, ['{"items": [', item, "]}"], "--schema-multi", ITEM_WITH_DEFS)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items"][0]["kids"][0]["name"] == "Bo"
    sent = bodies[0]["response_format"]["json_schema"]["schema"]
    assert sent["$defs"] == {"age": {"type": "integer"}}  # where #/$defs/age looks for it
    # A reference to the item itself (`#`) is to the item still, wrapped or not.
    done, _ = _ask(
        isolated_home,
        ['{"items": [{"name": "Ada", "kids": [{"name": 5}]}]}'],
        "--schema-multi",
        ITEM_WITH_DEFS,
    )
    assert done.returncode == 4 and done.stdout == ""
    assert "the reply breaks the schema at /items/0/kids/0/name: 5 is not of type 'string'" in done.stderr


@pytest.mark.parametrize("ref", ["#/$defs/nope", "https://example.com/schema.json", "other.json#/x"])
def test_a_reference_outside_the_schema_is_exit_2_and_nothing_sent(isolated_home: Path, ref: str) -> None:
    # jsonschema would fetch an http(s) $ref while validating the reply, or fail there with a
    # traceback once the request is paid for.
    schema = json.dumps({"type": "object", "properties": {"a": {"$ref": ref}}})
    done, bodies = _ask(isolated_home, ['{"a": 1}'], "--schema", schema)
    assert done.returncode == 2 and done.stdout == "" and bodies == []
    assert done.stderr.startswith(
        f"wai: error: --schema: the $ref {ref!r} (at /properties/a/$ref) points to nothing"
    )
    assert "Traceback" not in done.stderr


def _nested(levels: int) -> str:
    return '{"type": "object", "properties": {"a": ' * levels + "{}" + "}}" * levels


def test_a_schema_nested_past_what_is_read_is_exit_2_and_nothing_sent(isolated_home: Path) -> None:
    done, bodies = _ask(isolated_home, ['{"a": 1}'], "--schema", _nested(300))
    assert done.returncode == 2 and done.stdout == "" and bodies == []
    assert done.stderr.startswith("wai: error: --schema: the schema is nested more than 100 levels deep")
    assert "Traceback" not in done.stderr
    done, bodies = _ask(
        isolated_home, ['{"a": 1}'], "--schema", "[" * 100_000
    )  # no schema, and no JSON it reads
    assert done.returncode == 2 and bodies == [] and "Traceback" not in done.stderr


# How deep Python's JSON reader goes differs by version (3.13 reads 5,000 levels, 3.11 not 1,000):
# 100,000 levels is past it on every supported Python.
@pytest.mark.parametrize(
    ("schema", "levels", "why"),
    [
        ('{"type": "array"}', 100_000, "the reply is nested too deeply to read as JSON"),
        (
            '{"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}',
            400,
            "the reply is nested too deeply to check against the schema",
        ),
    ],
)
def test_a_reply_nested_past_what_is_read_is_exit_4(
    isolated_home: Path, schema: str, levels: int, why: str
) -> None:
    done, _ = _ask(isolated_home, ["[" * levels, "]" * levels], "--schema", schema, "--json")
    assert done.returncode == 4, done.stderr
    assert f"wai: error: {why}" in done.stderr and "Traceback" not in done.stderr
    document = json.loads(done.stdout)
    assert document["parsed"] is None and document["text"] == "[" * levels + "]" * levels


def test_a_dry_run_shows_the_schema_the_reply_would_be_held_to(isolated_home: Path) -> None:
    done, bodies = _ask(isolated_home, ["{}"], "--schema-multi", SPEC, "--dry-run")
    assert done.returncode == 0 and bodies == []
    assert json.loads(done.stdout)["schema"] == load_schema(SPEC, multi_items=True).document
    done, _ = _ask(isolated_home, ["{}"], "--dry-run")
    assert json.loads(done.stdout)["schema"] is None


FORMATS = json.dumps(
    {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "mail": {"type": "string", "format": "email"},
            "id": {"type": "string", "format": "uuid"},
        },
        "required": ["day", "mail", "id"],
    }
)


@pytest.mark.parametrize(
    ("field", "wrong"), [("day", "2024-02-31"), ("mail", "nobody"), ("id", "12345678-1234-1234-1234")]
)
def test_a_reply_whose_string_breaks_its_format_is_exit_4(
    isolated_home: Path, field: str, wrong: str
) -> None:
    good = {"day": "2024-02-29", "mail": "ada@example.com", "id": "12345678-1234-1234-1234-123456789abc"}
    done, _ = _ask(isolated_home, [json.dumps(good)], "--schema", FORMATS)
    assert done.returncode == 0, done.stderr
    done, _ = _ask(isolated_home, [json.dumps(good | {field: wrong})], "--schema", FORMATS)
    assert done.returncode == 4 and done.stdout == ""
    assert f"the reply breaks the schema at /{field}: '{wrong}' is not a " in done.stderr
    assert "(rule: format)" in done.stderr


@pytest.mark.parametrize(
    ("reply", "where"), [('{"name": "a\\ud800b"}', "/name"), ('{"n\\udc00": "x"}', "the root")]
)
def test_a_reply_holding_half_a_surrogate_pair_is_exit_4_with_its_text_kept(
    isolated_home: Path, reply: str, where: str
) -> None:
    # Valid JSON syntax, but the escape is no character: writing the value failed as "stdout is
    # closed" (exit 1, nothing in --json either), and with a traceback on a terminal.
    done, _ = _ask(isolated_home, [reply], "--schema", '{"type": "object"}')
    assert done.returncode == 4 and done.stdout == ""
    assert (
        f"the reply's JSON holds \\u{'d800' if 'ud800' in reply else 'dc00'} at {where}: half of a surrogate"
        in (done.stderr)
    )
    done, _ = _ask(isolated_home, [reply], "--schema", '{"type": "object"}', "--json")
    assert done.returncode == 4
    document = json.loads(done.stdout)
    assert document["text"] == reply and document["parsed"] is None
    done, _ = _ask(isolated_home, ['{"ok": "\\ud83d\\ude00"}'], "--schema", '{"type": "object"}')
    assert done.returncode == 0 and done.stdout == '{"ok": "\U0001f600"}\n'  # a whole pair is one character

"""`wai ask --schema` on the local backend: one validated JSON line on stdout, or nothing and exit 4."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.tiny_gguf import TinyModel, build_tiny_llama
from wai.schema import load_schema
from wai.schema.reply import parse_reply

pytest.importorskip("llama_cpp")

ONE = ("--threads", "1")
BOUNDED = "n int, ok bool, score float"
KINDS = json.dumps(
    {
        "type": "object",
        "properties": {
            "kind": {"enum": ["bug", "question", "praise"]},
            "urgent": {"type": "boolean"},
            "labels": {"type": "array", "items": {"enum": ["ui", "cli", "docs"]}, "maxItems": 3},
        },
        "required": ["kind", "urgent", "labels"],
        "additionalProperties": False,
    }
)


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Random weights: without a grammar it writes bytes at random."""
    path = tmp_path_factory.mktemp("schema-noise") / "noise.q8_0.gguf"
    return build_tiny_llama(path, ftype="q8_0", script="Hello world", noise=2.0, seed=1)


def _one_json_line(done: subprocess.CompletedProcess[str], spec: str, *, multi: bool = False) -> object:
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.endswith("\n") and done.stdout.count("\n") == 1, done.stdout
    document = load_schema(spec, multi_items=multi).document
    return parse_reply(done.stdout, document, finish_reason="stop")


@pytest.mark.parametrize("sampling", [("--temperature", "0"), ("--temperature", "1", "--seed", "7")])
def test_the_concise_form_gives_one_valid_json_line(noise: TinyModel, sampling: tuple[str, ...]) -> None:
    done = run_wai("ask", "-m", str(noise.path), *ONE, *sampling, "--schema", BOUNDED, "rate this")
    value = _one_json_line(done, BOUNDED)
    assert isinstance(value, dict) and set(value) == {"n", "ok", "score"}


def test_inline_and_file_schemas_and_multi(noise: TinyModel, tmp_path: Path) -> None:
    path = tmp_path / "kinds.json"
    path.write_text(KINDS, encoding="utf-8")
    for spec in (KINDS, str(path)):
        done = run_wai("ask", "-m", str(noise.path), *ONE, "--schema", spec, "classify: the button is broken")
        _one_json_line(done, KINDS)
    # Greedy: the list has no maxItems, and sampled noise could run it past the output window.
    done = run_wai(
        "ask",
        "-m",
        str(noise.path),
        *ONE,
        "--temperature",
        "0",
        "--schema-multi",
        KINDS,
        "classify each line",
    )
    value = _one_json_line(done, KINDS, multi=True)
    assert isinstance(value, dict) and isinstance(value["items"], list)


@pytest.mark.e2e
def test_a_model_that_writes_prose_is_held_to_json(tmp_path: Path) -> None:
    prose = build_tiny_llama(tmp_path / "prose.gguf", ftype="q8_0", script="Sure! Here is the answer.")
    done = run_wai("ask", "-m", str(prose.path), *ONE, "--schema", KINDS, "classify")
    _one_json_line(done, KINDS)


def test_a_bad_schema_is_exit_2_before_anything_loads(tmp_path: Path) -> None:
    missing = tmp_path / "never-read.gguf"  # the schema is refused before the model is looked for
    done = run_wai("ask", "-m", str(missing), "--schema", '{"type": "int"}', "hi")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("wai: error: --schema is not valid JSON Schema (Draft 2020-12): at /type")
    assert len(done.stderr.strip().splitlines()) == 1
    both = run_wai("ask", "-m", str(missing), "--schema", "a", "--schema-multi", "a", "hi")
    assert both.returncode == 2 and "cannot be used together" in both.stderr


def test_a_keyword_the_grammar_cannot_hold_is_exit_2_naming_it(noise: TinyModel) -> None:
    done = run_wai("ask", "-m", str(noise.path), "--schema", '{"type": "integer", "minimum": 1}', "hi")
    assert done.returncode == 2 and done.stdout == ""
    assert "the local backend's grammar cannot hold 'minimum' (at the root)" in done.stderr
    multi = run_wai("ask", "-m", str(noise.path), "--schema-multi", '{"type": "integer", "minimum": 1}', "hi")
    assert multi.returncode == 2 and multi.stdout == ""
    # The option the user gave, and where the keyword stands in what it asks for.
    assert multi.stderr.startswith(
        "wai: error: --schema-multi: the local backend's grammar cannot hold 'minimum' "
        "(at /properties/items/items)"
    )


def test_a_reply_cut_by_max_tokens_is_exit_4_with_nothing_on_stdout(noise: TinyModel) -> None:
    done = run_wai("ask", "-m", str(noise.path), *ONE, "--max-tokens", "4", "--schema", BOUNDED, "hi")
    assert done.returncode == 4
    assert done.stdout == ""
    assert "wai: error: the reply was cut by the output window (finish reason: length)" in done.stderr
    # The raw text is kept: in the transcript, and in --json beside the error.
    logged = json.loads(run_wai("logs", "--json").stdout)[0]
    turn = json.loads(run_wai("logs", "--cid", logged["id"], "--json").stdout)["turns"][-1]
    assert turn["reply"].startswith("{") and turn["error"].startswith("the reply was cut")
    as_json = run_wai(
        "ask", "-m", str(noise.path), *ONE, "--max-tokens", "4", "--schema", BOUNDED, "--json", "hi"
    )
    assert as_json.returncode == 4
    document = json.loads(as_json.stdout)
    assert document["text"].startswith("{") and document["parsed"] is None
    assert document["error"]["code"] == "schema" and document["error"]["exit_status"] == 4


def test_json_carries_the_parsed_object_beside_the_text(noise: TinyModel) -> None:
    done = run_wai("ask", "-m", str(noise.path), *ONE, "--schema", BOUNDED, "--json", "hi")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["parsed"] == json.loads(document["text"])
    assert document["error"] is None


def test_the_panel_shows_the_object_indented_and_highlighted(noise: TinyModel) -> None:
    done = run_wai("ask", "-m", str(noise.path), *ONE, "--color", "always", "--schema", BOUNDED, "hi")
    assert done.returncode == 0, done.stderr
    assert "\x1b[" in done.stdout  # highlighted
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout)
    assert re.search(r'^\s+"n": -?\d+,$', plain, re.MULTILINE), plain  # one key a line, indented


PERSON_DEFS = json.dumps(
    {
        "$defs": {
            "person": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"enum": [1, 2, 3]}},
                "required": ["name", "age"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/person",
    }
)


def test_multi_keeps_the_references_of_a_schema_with_defs(noise: TinyModel) -> None:
    # The item's $defs stay where its `#/$defs/...` references look for them: the root.
    done = run_wai(
        "ask", "-m", str(noise.path), *ONE, "--temperature", "0", "--schema-multi", PERSON_DEFS, "two people"
    )
    value = _one_json_line(done, PERSON_DEFS, multi=True)
    assert isinstance(value, dict) and isinstance(value["items"], list)


def test_a_reference_to_nowhere_is_exit_2_before_anything_loads(tmp_path: Path) -> None:
    missing = tmp_path / "never-read.gguf"
    done = run_wai("ask", "-m", str(missing), "--schema", '{"$ref": "#/$defs/nope"}', "hi")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(
        "wai: error: --schema: the $ref '#/$defs/nope' (at /$ref) points to nothing"
    )
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        (
            '{"type": "string", "minLength": 5, "maxLength": 2}',
            "minLength 5 is above maxLength 2 (at the root)",
        ),
        (
            '{"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "maxItems": 2}}}',
            "minItems 3 is above maxItems 2 (at /properties/a)",
        ),
        (
            '{"type": "integer", "minimum": 10, "maximum": 1.5}',
            "minimum 10 is above maximum 1.5 (at the root)",
        ),
    ],
)
def test_bounds_no_reply_can_meet_are_exit_2_before_anything_loads(
    tmp_path: Path, schema: str, said: str
) -> None:
    # Held by the grammar, such a schema decoded until the output window cut it, then exit 4.
    done = run_wai("ask", "-m", str(tmp_path / "never-read.gguf"), "--schema", schema, "hi")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"wai: error: --schema: {said}, so no reply can satisfy the schema")


TYPED_ENUM = json.dumps(
    {
        "type": "object",
        "properties": {
            "k": {"type": "string", "enum": ["a", 1, 2, 3]},
            "c": {"type": ["integer"], "const": 7},
        },
        "required": ["k", "c"],
    }
)


def test_an_enum_beside_a_type_is_held_to_the_values_of_that_type(noise: TinyModel) -> None:
    # The grammar holds the values of the type (tests/schema/test_grammar.py); a const beside a
    # list of types was refused, and values of no such type decoded until validation refused them.
    for seed in ("1", "2", "3", "4", "5", "6"):
        done = run_wai(
            "ask",
            "-m",
            str(noise.path),
            *ONE,
            "--temperature",
            "1.5",
            "--seed",
            seed,
            "--schema",
            TYPED_ENUM,
            "pick",
        )
        assert _one_json_line(done, TYPED_ENUM) == {"k": "a", "c": 7}
    none = run_wai("ask", "-m", str(noise.path), "--schema", '{"type": "integer", "enum": ["a", 1.5]}', "hi")
    assert none.returncode == 2 and none.stdout == ""
    assert none.stderr.startswith(
        "wai: error: --schema: no value of 'enum' (at the root) is of the type integer beside it, so no reply"
    )

"""`--schema SPEC` read in its three forms, checked as JSON Schema, and replies held to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from wai.errors import EXIT_SCHEMA, EXIT_USAGE, SchemaMismatch, UsageError
from wai.schema import load_schema
from wai.schema.reply import parse_reply

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "likes_cats": {"type": "boolean"},
        "bio": {"type": "string", "description": "a one-line biography"},
    },
    "required": ["name", "age", "likes_cats", "bio"],
    "additionalProperties": False,
}


def test_the_concise_form_is_an_object_of_required_typed_fields() -> None:
    schema = load_schema("name, age int, likes_cats bool, bio: a one-line biography")
    assert schema.document == PERSON
    assert not schema.multi


def test_the_concise_form_on_lines_lets_descriptions_hold_commas() -> None:
    schema = load_schema("name: first, then last\nscore float: 0 to 1, higher is better\n")
    assert schema.document["properties"] == {
        "name": {"type": "string", "description": "first, then last"},
        "score": {"type": "number", "description": "0 to 1, higher is better"},
    }
    assert schema.document["required"] == ["name", "score"]


def test_inline_and_file_forms_give_the_document_as_written(tmp_path: Path) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON), encoding="utf-8")
    assert load_schema(str(path)).document == PERSON
    assert load_schema(f"  {json.dumps(PERSON)}  ").document == PERSON


def test_a_file_of_another_name_holds_either_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    as_json, concise = tmp_path / "person.schema", tmp_path / "person.txt"
    as_json.write_text(json.dumps(PERSON), encoding="utf-8")
    concise.write_text("name\nage int\nlikes_cats bool\nbio: a one-line biography\n", encoding="utf-8")
    assert load_schema(str(as_json)).document == PERSON
    assert load_schema(str(concise)).document == PERSON
    # A bare word stays a field, even where a file bears its name.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "name").write_text("{}", encoding="utf-8")
    assert load_schema("name").document["required"] == ["name"]
    assert load_schema("./person.txt").document == PERSON


def test_multi_asks_for_an_items_array_of_the_objects() -> None:
    schema = load_schema("name, age int", multi_items=True, option="--schema-multi")
    assert schema.multi and schema.name == "items"
    items = schema.document["properties"]["items"]
    assert items["type"] == "array"
    assert items["items"]["required"] == ["name", "age"]
    assert schema.document["required"] == ["items"]
    parse_reply('{"items": [{"name": "a", "age": 1}]}', schema.document, finish_reason="stop")


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ('{"type": "int"}', "not valid JSON Schema (Draft 2020-12): at /type, 'int' is not valid"),
        (
            '{"properties": {"a": {"maxLength": -1}}}',
            "at /properties/a/maxLength, -1 is less than the minimum of 0",
        ),
        ('{"type": "string", "pattern": "(unclosed"}', "at /pattern,"),
        ('{"type": ', "the schema is not valid JSON: Expecting value at line 1 column 9"),
        ("missing.json", "there is no file missing.json"),
        ("name, age integer", "the field 'age' has the type 'integer'"),
        ("name, name int", "the field 'name' is named twice"),
        ("name, [x]", "cannot read the field '[x]'"),
        (" , ", "--schema names no field"),
        ("", "--schema is empty"),
    ],
)
def test_a_bad_spec_is_one_usage_line_naming_where(spec: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        load_schema(spec)
    assert caught.value.exit_code == EXIT_USAGE
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(UsageError, match=r"is a JSON array, not an object"):
        load_schema(str(path))


def _mismatch(text: str, document: dict[str, Any], finish: str = "stop") -> SchemaMismatch:
    with pytest.raises(SchemaMismatch) as caught:
        parse_reply(text, document, finish_reason=finish)
    assert caught.value.exit_code == EXIT_SCHEMA == 4
    assert caught.value.raw == text
    return caught.value


def test_a_valid_reply_gives_its_value() -> None:
    reply = '{"name": "Ada", "age": 36, "likes_cats": true, "bio": "wrote the first program"}'
    assert parse_reply(reply, PERSON, finish_reason="stop")["age"] == 36


def test_a_reply_that_breaks_a_rule_names_the_pointer_and_the_rule() -> None:
    error = _mismatch('{"name": "Ada", "age": "old", "likes_cats": true, "bio": ""}', PERSON)
    assert str(error) == "the reply breaks the schema at /age: 'old' is not of type 'integer' (rule: type)"
    nested = load_schema("a int", multi_items=True).document
    error = _mismatch('{"items": [{"a": 1}, {"a": 2, "b": 3}]}', nested)
    assert "at /items/1:" in str(error) and "(rule: additionalProperties)" in str(error)


def test_a_reply_that_is_not_json_says_where_it_stops_being_json() -> None:
    assert str(_mismatch("Sure! Here it is: {}", PERSON)) == (
        "the reply is not JSON: Expecting value at line 1 column 1"
    )
    assert "NaN is not a JSON value" in str(_mismatch('{"age": NaN}', PERSON))
    assert "empty" in str(_mismatch("", PERSON))


def test_a_reply_cut_by_the_output_window_says_so_and_what_to_do() -> None:
    error = _mismatch('{"name": "Ad', PERSON, finish="length")
    assert "cut by the output window (finish reason: length) before its JSON closed" in str(error)
    assert "--max-tokens" in str(error) and "maxLength" in str(error)

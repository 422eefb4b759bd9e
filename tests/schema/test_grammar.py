"""A schema as llama.cpp's grammar: what the converter holds goes through, what it would silently
drop is refused by name, before anything is decoded."""

from __future__ import annotations

import pytest

from wai.errors import EXIT_USAGE, UsageError
from wai.schema import load_schema
from wai.schema.grammar import gbnf

pytest.importorskip("llama_cpp")


def _grammar(spec: str) -> str:
    return gbnf(load_schema(spec).document)


@pytest.mark.parametrize(
    ("spec", "keyword", "where"),
    [
        ('{"type": "integer", "minimum": 1}', "'minimum'", "at the root"),
        (
            '{"properties": {"a": {"type": "string", "pattern": "^a+$", "maxLength": 3}}}',
            "'maxLength'",
            "at /properties/a) beside 'pattern'",
        ),
        ('{"oneOf": [{"type": "string"}, {"type": "null"}]}', "'oneOf'", "anyOf"),
        ('{"allOf": [{"properties": {"a": {"type": "string"}}}]}', "'allOf'", "at the root"),
        ('{"type": "array", "items": {"type": "string"}, "uniqueItems": true}', "'uniqueItems'", "root"),
        ('{"type": ["string", "null"], "maxLength": 4}', "'maxLength'", "beside a list of types"),
        (
            '{"$defs": {"n": {"type": "number", "multipleOf": 2}}, "$ref": "#/$defs/n"}',
            "'multipleOf'",
            "at /$defs/n",
        ),
        ('{"type": "string", "format": "email"}', "'format'", "'email' is not one it knows"),
        ('{"properties": {"a": {"type": "string"}}, "required": ["b"]}', "'required'", "'b' is required"),
        (
            '{"type": "object", "properties": {"a": {"type": "string"}}, "minProperties": 1}',
            "'minProperties'",
            "at the root",
        ),
    ],
)
def test_what_the_grammar_would_drop_is_refused_by_name(spec: str, keyword: str, where: str) -> None:
    with pytest.raises(UsageError) as caught:
        _grammar(spec)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE
    assert f"the local backend's grammar cannot hold {keyword}" in message
    assert where in message


def test_what_the_converter_itself_cannot_read_is_refused_in_its_words() -> None:
    with pytest.raises(UsageError, match=r"cannot hold this schema: Pattern must start with"):
        _grammar('{"type": "string", "pattern": "ab"}')
    with pytest.raises(UsageError, match=r"Unsupported pattern syntax"):
        _grammar('{"type": "string", "pattern": "^(?!a)b$"}')


def test_annotations_and_the_common_keywords_convert() -> None:
    grammar = _grammar(
        '{"title": "T", "description": "d", "type": "object", "properties": {'
        '"kind": {"enum": ["cat", "dog"], "description": "which"}, '
        '"n": {"type": "integer", "examples": [1]}, '
        '"tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 2}, '
        '"when": {"type": "string", "format": "date"}, '
        '"any": {"description": "anything at all"}, '
        '"maybe": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/point"}]}}, '
        '"required": ["kind", "n"], "additionalProperties": false, '
        '"$defs": {"point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}]}}}'
    )
    assert grammar.startswith("any ::=") or "root ::=" in grammar
    assert '"\\"cat\\""' in grammar and "date" in grammar


def test_a_json_string_holds_no_raw_control_character() -> None:
    # The converter's own string rule takes them, and JSON cannot parse them.
    grammar = _grammar('{"type": "string"}')
    assert r'char ::= [^"\\\x7F\x00-\x1F]' in grammar


def test_a_bound_llama_cpp_cannot_parse_is_refused_with_its_limit() -> None:
    # 1000 optional characters parse; llama.cpp's parser refuses 1001 (and prints the grammar).
    assert "root ::=" in _grammar('{"type": "string", "maxLength": 1000}')
    with pytest.raises(UsageError, match=r"maxLength 4000 \(at /properties/story\) is more than"):
        _grammar('{"type": "object", "properties": {"story": {"type": "string", "maxLength": 4000}}}')
    with pytest.raises(UsageError, match=r"maxItems 1001 \(at the root\)"):
        _grammar('{"type": "array", "items": {"type": "integer"}, "maxItems": 1001}')
    assert "root ::=" in _grammar('{"type": "array", "items": {}, "minItems": 5000, "maxItems": 5000}')


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ('{"type": "string", "enum": ["a", 1, 2]}', 'root ::= "\\"a\\""\n'),
        ('{"type": ["integer", "null"], "enum": [1, "x", null]}', 'root ::= "1" | "null"\n'),
    ],
)
def test_an_enum_beside_a_type_gives_the_grammar_only_the_values_of_that_type(spec: str, rule: str) -> None:
    # The converter writes every value and passes over the type: SmolLM2 sampled at temperature 2
    # answered 3 for {"type": "string", "enum": ["a", 1, 2, 3]}, then failed validation (exit 4).
    assert rule in _grammar(spec)

"""A schema as a GBNF grammar for llama.cpp, made by llama-cpp-python's own converter.

The converter (`llama_cpp.llama_grammar`) silently passes over what it cannot express: a
`minimum`, a `uniqueItems`, an `allOf`'s other parts, a `maxLength` beside a `pattern`. A grammar
that held less than the schema asks would let through replies that then fail validation, so the
schema is first walked the way the converter reads it, and every keyword it would pass over is
refused by name. The converter then gets a copy holding only what it expresses (annotations such
as `description` out: it stumbles on a schema made only of one).
"""

from __future__ import annotations

import json
from typing import Any

from wai.errors import UsageError
from wai.schema.check import pointer

# Words that describe and never constrain: left out of the converter's copy.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated",
     "readOnly", "writeOnly", "$defs", "definitions"}
)  # fmt: skip
# Every constraining keyword of Draft 2020-12. Others are no keyword at all: JSON Schema, and the
# converter alike, ignore them.
KEYWORDS = frozenset(
    {"$ref", "$dynamicRef", "$dynamicAnchor", "$anchor", "$vocabulary",
     "prefixItems", "items", "contains", "additionalProperties", "properties", "patternProperties",
     "dependentSchemas", "propertyNames", "if", "then", "else", "allOf", "anyOf", "oneOf", "not",
     "unevaluatedItems", "unevaluatedProperties",
     "type", "const", "enum", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
     "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
     "maxContains", "minContains", "maxProperties", "minProperties", "required", "dependentRequired",
     "format", "contentEncoding", "contentMediaType", "contentSchema"}
)  # fmt: skip
HELD_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
HELD_SUMMARY = (
    "llama.cpp's grammar holds type, enum, const, properties, required, items, prefixItems, "
    "min/maxItems, min/maxLength, an anchored pattern, anyOf, $ref, date/time/uuid formats"
)
_ESCAPE = r'"\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
_LOOSE_CHAR = r'char ::= [^"\\] | ' + _ESCAPE
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | ' + _ESCAPE
# llama.cpp's grammar parser refuses more than this many optional repetitions of one item (the
# converter writes `maxLength: 1500` as 1500 nested optional characters).
MAX_OPTIONAL_REPEATS = 1000
_SIMPLE_TYPES = frozenset({"string", "number", "integer", "boolean", "null", "array", "object"})


def gbnf(document: dict[str, Any], *, option: str = "--schema") -> str:
    """The GBNF grammar holding a reply to `document`; UsageError naming the first keyword (and
    where it stands) that llama.cpp's grammar cannot hold."""
    held = _Walk(option).root(document)
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # heavy: the local backend only

    try:
        grammar = str(json_schema_to_gbnf(json.dumps(held)))
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        # What the walk lets through converts; this is the converter's own word on what it lacks
        # (a regular expression's lookahead, say).
        raise UsageError(
            f"{option}: the local backend's grammar cannot hold this schema: {exc}", hint=HELD_SUMMARY
        ) from None
    # This converter's string character takes control characters, which JSON forbids raw inside a
    # string: a reply could hold to the grammar and still not parse. llama.cpp's own converter has
    # since closed that gap with this rule.
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)


class _Walk:
    """Copies a schema keeping what the converter expresses, refusing what it would drop."""

    def __init__(self, option: str) -> None:
        self.option = option

    def root(self, document: dict[str, Any]) -> dict[str, Any]:
        held = self.node(document, [])
        for container in ("$defs", "definitions"):
            defs = document.get(container)
            if isinstance(defs, dict):
                held[container] = {name: self.node(sub, [container, name]) for name, sub in defs.items()}
        return held

    def refuse(self, keyword: str, path: list[str | int], why: str = "") -> UsageError:
        return UsageError(
            f"{self.option}: the local backend's grammar cannot hold {keyword!r} (at {pointer(path)}){why}",
            hint=f"remove it; {HELD_SUMMARY}",
        )

    def node(self, schema: object, path: list[str | int]) -> dict[str, Any]:
        if not isinstance(schema, dict):
            raise self.refuse(f"{str(schema).lower()} as a schema", path, ": write {} or a type instead")
        kind = schema.get("type")
        keep: set[str]
        out: dict[str, Any] = {}
        # The converter's own order of cases: the first that matches decides, the rest is dropped.
        if "$ref" in schema:
            keep = {"$ref"}
            ref = schema["$ref"]
            if not (isinstance(ref, str) and ref.startswith("#/")):
                raise self.refuse("$ref", path, f": {ref!r} is not a reference inside the schema (#/...)")
        elif "oneOf" in schema:
            raise self.refuse("oneOf", path, ": it holds anyOf (without oneOf's only-one rule)")
        elif "anyOf" in schema:
            keep = {"anyOf"}
            out["anyOf"] = [self.node(sub, [*path, "anyOf", i]) for i, sub in enumerate(schema["anyOf"])]
        elif "const" in schema or "enum" in schema:
            # Before a list of types, which the converter would take first: its copy gets the
            # values alone, so the values decide.
            keep = {"const" if "const" in schema else "enum", "type"}
            if "type" in schema:
                self.typed_choices(schema, path, out)
        elif isinstance(kind, list):
            keep = {"type"}
        elif kind in (None, "object") and (
            "properties" in schema or schema.get("additionalProperties", True) is not True
        ):
            keep = {"type", "properties", "required", "additionalProperties"}
            self.object(schema, path, out)
        elif kind in (None, "object") and "allOf" in schema:
            raise self.refuse("allOf", path, ": merge its parts into one object")
        elif kind in (None, "array") and ("items" in schema or "prefixItems" in schema):
            if "items" in schema:
                keep = {"type", "items", "minItems", "maxItems"}
                # `items: {}` (anything) trips the converter, which reads an empty schema as absent.
                out["items"] = self.node(schema["items"], [*path, "items"]) or {"type": sorted(_SIMPLE_TYPES)}
            else:
                keep = {"type", "prefixItems"}
                out["prefixItems"] = [
                    self.node(sub, [*path, "prefixItems", i]) for i, sub in enumerate(schema["prefixItems"])
                ]
        elif kind in (None, "string") and "pattern" in schema:
            keep = {"type", "pattern"}
        elif kind in (None, "string") and "format" in schema:
            if schema["format"] not in HELD_FORMATS:
                raise self.refuse("format", path, f": {schema['format']!r} is not one it knows")
            keep = {"type", "format"}
        elif kind == "string" and ("minLength" in schema or "maxLength" in schema):
            keep = {"type", "minLength", "maxLength"}
        elif kind in _SIMPLE_TYPES or not (KEYWORDS & schema.keys()):
            keep = {"type"}
            if kind in (None, "object") and schema.get("additionalProperties") is True:
                keep.add("additionalProperties")  # any object: what it holds already
                out["additionalProperties"] = None  # ... so it is not copied
        else:
            keep = set()  # a constraint without a type: refused below, by its name
        for keyword in sorted(KEYWORDS & schema.keys()):
            if keyword not in keep:
                raise self.refuse(keyword, path, _beside(keep, schema))
        for low, high in (("minLength", "maxLength"), ("minItems", "maxItems")):
            if high in keep and high in schema:
                optional = schema[high] - schema.get(low, 0)
                if optional > MAX_OPTIONAL_REPEATS:
                    raise UsageError(
                        f"{self.option}: {high} {schema[high]} (at {pointer(path)}) is more than the local "
                        f"backend's grammar can hold: at most {MAX_OPTIONAL_REPEATS} above {low}",
                        hint=f"lower {high}, or leave it out (the output window then bounds the reply)",
                    )
        for keyword in keep:
            if keyword in schema and keyword not in out:
                out[keyword] = schema[keyword]
        return {keyword: value for keyword, value in out.items() if value is not None}

    def typed_choices(self, schema: dict[str, Any], path: list[str | int], out: dict[str, Any]) -> None:
        """The converter writes an enum's (or a const's) values and passes over a `type` beside
        them: the grammar is given only the values of that type, which are all the schema allows."""
        from jsonschema import Draft202012Validator

        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        keyword = "const" if "const" in schema else "enum"
        choices = [schema["const"]] if keyword == "const" else list(schema["enum"])
        typed = [
            value
            for value in choices
            if any(Draft202012Validator.TYPE_CHECKER.is_type(value, kind) for kind in kinds)
        ]
        if not typed:
            raise UsageError(
                f"{self.option}: no value of {keyword!r} (at {pointer(path)}) is of the type "
                f"{' or '.join(kinds)} beside it, so no reply can satisfy the schema",
                hint=f"change the type, or the values of {keyword!r}",
            )
        out["type"] = None  # held by the values themselves
        if keyword == "enum":
            out["enum"] = typed

    def object(self, schema: dict[str, Any], path: list[str | int], out: dict[str, Any]) -> None:
        properties = schema.get("properties", {})
        out["properties"] = {
            name: self.node(sub, [*path, "properties", name]) for name, sub in properties.items()
        }
        missing = [name for name in schema.get("required", []) if name not in properties]
        if missing:
            raise self.refuse("required", path, f": {missing[0]!r} is required but not among the properties")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = self.node(extra, [*path, "additionalProperties"])


def _beside(keep: set[str], schema: dict[str, Any]) -> str:
    """Why a keyword is dropped: the case the converter took ignores it."""
    deciding = next((k for k in ("$ref", "anyOf", "const", "enum") if k in keep and k in schema), None)
    if deciding is not None:
        return f" beside {deciding!r}"
    if isinstance(schema.get("type"), list):
        return " beside a list of types"
    if "pattern" in keep:
        return " beside 'pattern'"
    if "format" in keep:
        return " beside 'format'"
    return ""

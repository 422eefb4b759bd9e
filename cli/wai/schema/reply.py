"""Whether a reply satisfies the schema it was asked for: JSON, closed, and by every rule."""

from __future__ import annotations

import json
import re
from typing import Any

from wai.errors import SchemaMismatch
from wai.schema.check import pointer, registry, shorten

# What json.loads leaves of a `\\uD800`-style escape without its pair: no character, and nothing
# UTF-8 can write (a valid pair is joined into one character as it is read).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
CUT_HINT = "raise --max-tokens, or bound the schema's strings and arrays with maxLength and maxItems"


def parse_reply(text: str, document: dict[str, Any], *, finish_reason: str | None) -> Any:
    """The reply's JSON value once it satisfies `document`; SchemaMismatch saying why not (the
    JSON pointer and the rule it breaks, where JSON's syntax fails, or the finish reason when the
    output window cut it before the JSON closed)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    try:
        value = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        # Python's reader recurses per level: a reply of a few thousand brackets is no JSON it reads.
        raise SchemaMismatch("the reply is nested too deeply to read as JSON", raw=text) from None
    except ValueError as exc:
        if finish_reason == "length":
            raise SchemaMismatch(
                "the reply was cut by the output window (finish reason: length) before its JSON closed",
                raw=text,
                hint=CUT_HINT,
            ) from None
        if not text.strip():
            raise SchemaMismatch("the reply is empty, not the JSON the schema asks for", raw=text) from None
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise SchemaMismatch(f"the reply is not JSON: {message}{where}", raw=text) from None
    _refuse_lone_surrogates(value, text)
    try:
        # Draft 2020-12 makes `format` an annotation unless told otherwise: a pipeline asking for a
        # date or an email wants one, so the formats jsonschema knows are checked.
        validator = Draft202012Validator(
            document, registry=registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        error = best_match(validator.iter_errors(value))
    except RecursionError:
        raise SchemaMismatch("the reply is nested too deeply to check against the schema", raw=text) from None
    if error is not None:
        raise SchemaMismatch(
            f"the reply breaks the schema at {pointer(error.absolute_path)}: {shorten(error.message)} "
            f"(rule: {error.validator})",
            raw=text,
        )
    return value


def _refuse_lone_surrogates(value: Any, text: str) -> None:
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            found = _LONE_SURROGATE.search(node)
            if found is not None:
                raise SchemaMismatch(
                    f"the reply's JSON holds \\u{ord(found.group()):04x} at {pointer(path)}: half of a "
                    "surrogate pair without its other half, no character (nothing UTF-8 can write)",
                    raw=text,
                )
        elif isinstance(node, dict):
            for key, child in node.items():
                stack.append((child, [*path, key]))
                stack.append((key, path))  # a name, said where its object stands, read first
        elif isinstance(node, list):
            stack.extend((child, [*path, index]) for index, child in enumerate(node))


def _not_json(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON has no such values, and a consumer would choke.
    raise ValueError(f"{name} is not a JSON value")

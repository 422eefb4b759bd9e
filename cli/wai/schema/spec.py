"""What `--schema SPEC` means: a JSON Schema inline, in a .json file, or in the concise form; a
file of another name (`schema.txt`, `./person`) holds either, a JSON Schema when it begins with `{`.

The concise form covers the common case of a flat object in one line:
`'name, age int, likes_cats bool, bio: a one-line biography'`. Fields are separated by commas, or
by newlines when there is a newline (then a description may hold commas); each is a name, an
optional type (str, int, float, bool; str when left out) and an optional description after a
colon. Every field is required and no other field is allowed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from wai.errors import UsageError

CONCISE_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
# A field: a name, then perhaps a type word, then perhaps ": description".
_FIELD = re.compile(r"(?P<name>\w[\w.-]*)(?:\s+(?P<type>[^\s:]+))?\s*(?::\s*(?P<description>.*))?", re.DOTALL)


def read_spec(spec: str, *, option: str = "--schema") -> dict[str, Any]:
    """The JSON Schema document `spec` stands for; UsageError naming what is wrong when it cannot
    be read. Whether the document is valid JSON Schema is for `check.check_schema` to say."""
    text = spec.strip()
    if not text:
        raise UsageError(
            f"{option} is empty",
            hint="give a JSON Schema, a .json file or fields such as 'name, age int'",
        )
    if text.startswith("{"):
        return _json_object(text, "the schema", option)
    if text.lower().endswith(".json"):
        path = Path(text).expanduser()
        return _json_object(_read(path, option), str(path), option)
    if _names_a_file(text):
        path = Path(text).expanduser()
        content = _read(path, option).strip()
        if content.startswith("{"):
            return _json_object(content, str(path), option)
        return concise_schema(content, option=f"{option} {path}")
    return concise_schema(text, option=option)


def _names_a_file(text: str) -> bool:
    """A file's name, not fields: it looks like a path (a folder or an extension in it, no comma
    or space) and the file is there. A bare word stays a field even when a file bears its name."""
    if any(mark in text for mark in ", \n") or not ("/" in text or "." in text.lstrip(".")):
        return False
    return Path(text).expanduser().is_file()


def _read(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{option}: there is no file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc}") from None


def concise_schema(text: str, *, option: str = "--schema") -> dict[str, Any]:
    """The object schema of the concise form (see the module's note)."""
    separator = "\n" if "\n" in text else ","
    properties: dict[str, dict[str, str]] = {}
    for raw in text.split(separator):
        field = raw.strip()
        if not field:
            continue  # a trailing comma or a blank line
        match = _FIELD.fullmatch(field)
        if match is None:
            raise UsageError(
                f"{option}: cannot read the field {field!r}",
                hint="write each field as 'name', 'name type' or 'name type: description'",
            )
        name, kind, description = match.group("name", "type", "description")
        if kind is not None and kind not in CONCISE_TYPES:
            raise UsageError(
                f"{option}: the field {name!r} has the type {kind!r}, which the concise form does not know",
                hint=f"use one of {', '.join(CONCISE_TYPES)}, or give a JSON Schema",
            )
        if name in properties:
            raise UsageError(f"{option}: the field {name!r} is named twice")
        prop = {"type": CONCISE_TYPES[kind or "str"]}
        if description and description.strip():
            prop["description"] = description.strip()
        properties[name] = prop
    if not properties:
        raise UsageError(f"{option} names no field")
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# What belongs to a schema's root rather than to the object it describes: in `--schema-multi`'s
# wrapper it stays at the root, so a `$ref` to `#/$defs/...` still finds what it names.
_ROOT_KEYWORDS = ("$schema", "$id", "$defs", "definitions")
_ITEM = "/properties/items/items"


def multi(document: dict[str, Any]) -> dict[str, Any]:
    """`--schema-multi`: an object whose `items` is an array of what `document` describes.

    The item's root keywords move up to the wrapper's root, and every other reference to a part
    of the item (`#`, `#/properties/...`) is rewritten to where that part now stands."""
    item = {key: _moved(value) for key, value in document.items() if key not in _ROOT_KEYWORDS}
    wrapper: dict[str, Any] = {key: document[key] for key in _ROOT_KEYWORDS if key in document}
    return wrapper | {
        "type": "object",
        "properties": {"items": {"type": "array", "items": item}},
        "required": ["items"],
        "additionalProperties": False,
    }


def _moved(node: Any) -> Any:
    """`node` with its references to the item's own parts pointing where the item now stands."""
    if isinstance(node, list):
        return [_moved(item) for item in node]
    if not isinstance(node, dict):
        return node
    moved = {key: value if key in ("const", "enum", "default", "examples") else _moved(value)
             for key, value in node.items()}  # fmt: skip
    ref = node.get("$ref")
    if (
        isinstance(ref, str)
        and (ref == "#" or ref.startswith("#/"))
        and not ref.startswith(("#/$defs/", "#/definitions/"))
    ):
        moved["$ref"] = "#" + _ITEM + ref[1:]
    return moved


def _json_object(text: str, where: str, option: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option}: {where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise UsageError(f"{option}: {where} is nested too deeply to read") from None
    if not isinstance(document, dict):
        raise UsageError(
            f"{option}: {where} is a JSON {json_kind(document)}, not an object",
            hint='a schema is an object such as {"type": "object", "properties": {...}}',
        )
    return document


def json_kind(value: object) -> str:
    """JSON's own name for the kind of a parsed value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"

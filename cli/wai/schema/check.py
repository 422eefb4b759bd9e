"""Whether a document is valid JSON Schema (Draft 2020-12), said in one line naming where not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wai.errors import UsageError


def check_schema(document: dict[str, Any], *, option: str = "--schema") -> None:
    """UsageError naming the first place where `document` breaks the Draft 2020-12 meta-schema."""
    from jsonschema import Draft202012Validator, SchemaError  # heavy: only when a schema is given

    try:
        Draft202012Validator.check_schema(document)
    except SchemaError as exc:
        raise UsageError(
            f"{option} is not valid JSON Schema (Draft 2020-12): at {pointer(exc.absolute_path)}, "
            f"{shorten(exc.message)}",
            hint="see https://json-schema.org/understanding-json-schema",
        ) from None


def pointer(path: Iterable[str | int]) -> str:
    """The JSON pointer (RFC 6901) of a path of keys and indexes; `the root` for an empty one."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "/" + "/".join(parts) if parts else "the root"


def shorten(message: str, limit: int = 200) -> str:
    """A validator's message, which quotes the offending value, kept to one readable line."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"

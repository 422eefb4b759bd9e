"""Structured output: the schema a reply is asked to follow (`--schema`, `--schema-multi`).

Light to import: jsonschema and llama.cpp's grammar converter are imported only when used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wai.schema.check import check_schema
from wai.schema.spec import multi, read_spec

__all__ = ["Schema", "load_schema"]

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Schema:
    """A checked JSON Schema (Draft 2020-12) a reply must satisfy; `multi`: it is the wrapping
    `{"items": [...]}` of `--schema-multi`; `option`: where it was given (`--schema`,
    `--schema-multi`, `/schema`), which a message about it names."""

    document: dict[str, Any]
    multi: bool = False
    option: str = "--schema"

    @property
    def name(self) -> str:
        """A name for APIs that ask one (OpenAI's json_schema.name: [A-Za-z0-9_-], 64 at most)."""
        title = self.document.get("title")
        name = _NAME_CHARS.sub("_", title).strip("_")[:64] if isinstance(title, str) else ""
        return name or ("items" if self.multi else "reply")


def load_schema(spec: str, *, multi_items: bool = False, option: str = "--schema") -> Schema:
    """The checked schema SPEC stands for; UsageError (exit 2) naming what is wrong, before
    anything is loaded or sent."""
    document = read_spec(spec, option=option)
    check_schema(document, option=option)
    return Schema(multi(document) if multi_items else document, multi=multi_items, option=option)

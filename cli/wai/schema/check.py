"""Whether a document is valid JSON Schema (Draft 2020-12), said in one line naming where not."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from wai.errors import UsageError

if TYPE_CHECKING:
    from referencing import Registry

# Deeper than any schema written by hand; jsonschema's walk of the meta-schema recurses a few
# frames per level, and past about 180 levels Python's recursion limit stops it with a traceback.
MAX_DEPTH = 100
# Keywords whose values are data, not schemas: a "$ref" inside one is no reference.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


def check_schema(document: dict[str, Any], *, option: str = "--schema") -> None:
    """UsageError naming the first place where `document` breaks the Draft 2020-12 meta-schema, or
    a `$ref` that points to nothing inside it."""
    from jsonschema import Draft202012Validator, SchemaError  # heavy: only when a schema is given

    too_deep = UsageError(
        f"{option}: the schema is nested more than {MAX_DEPTH} levels deep",
        hint="flatten it, or name a part that repeats in $defs and $ref it",
    )
    if depth(document) > MAX_DEPTH:
        raise too_deep
    try:
        Draft202012Validator.check_schema(document)
    except RecursionError:
        raise too_deep from None
    except SchemaError as exc:
        raise UsageError(
            f"{option} is not valid JSON Schema (Draft 2020-12): at {pointer(exc.absolute_path)}, "
            f"{shorten(exc.message)}",
            hint="see https://json-schema.org/understanding-json-schema",
        ) from None
    _check_references(document, option)
    _check_bounds(document, option)


# A lower bound above its upper bound: valid JSON Schema that no value satisfies. Held by a grammar
# it decodes until the output window cuts it; sent to a service it is paid for, then refused.
_BOUNDS = (
    ("minLength", "maxLength"),
    ("minItems", "maxItems"),
    ("minProperties", "maxProperties"),
    ("minContains", "maxContains"),
    ("minimum", "maximum"),
)


def _check_bounds(document: dict[str, Any], option: str) -> None:
    stack: list[tuple[object, list[str | int]]] = [(document, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, list):
            stack.extend((item, [*path, index]) for index, item in enumerate(node))
        elif isinstance(node, dict):
            for low, high in _BOUNDS:
                least, most = _number(node.get(low)), _number(node.get(high))
                if least is not None and most is not None and least > most:
                    raise UsageError(
                        f"{option}: {low} {least} is above {high} {most} (at {pointer(path)}), "
                        "so no reply can satisfy the schema",
                        hint=f"lower {low} or raise {high}",
                    )
            stack.extend((value, [*path, key]) for key, value in node.items() if key not in _DATA_KEYWORDS)


def _number(value: object) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def depth(value: object) -> int:
    """How deeply JSON objects and arrays nest in `value` (0 for a scalar), without recursing."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is not None:
            deepest = max(deepest, level + 1)
            stack.extend((child, level + 1) for child in children)
    return deepest


def registry() -> Registry[Any]:
    """The references a schema may follow: its own parts only. jsonschema's default would fetch
    an http(s) `$ref` from the network in the middle of validating a reply."""
    from referencing import Registry

    return Registry()


def _check_references(document: dict[str, Any], option: str) -> None:
    # The meta-schema says nothing of where a reference points; an unresolvable one would stop the
    # reply's validation once the request is paid for, so it is refused before anything is sent.
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    resolver = registry().resolver_with_root(DRAFT202012.create_resource(document))
    for ref, path in _references(document, [], ""):
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise UsageError(
                f"{option}: the $ref {ref!r} (at {pointer(path)}) points to nothing inside the schema",
                hint="point it at a part of the schema, such as #/$defs/NAME: wai fetches no schema",
            ) from None


def _references(node: object, path: list[str | int], base: str) -> Iterator[tuple[str, list[str | int]]]:
    """Every `$ref` of a schema, made absolute against the `$id`s above it, with where it stands."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _references(item, [*path, index], base)
    elif isinstance(node, dict):
        if isinstance(node.get("$id"), str):
            base = urljoin(base, node["$id"])
        if isinstance(node.get("$ref"), str):
            yield urljoin(base, node["$ref"]), [*path, "$ref"]
        for key, value in node.items():
            if key not in _DATA_KEYWORDS:
                yield from _references(value, [*path, key], base)


def pointer(path: Iterable[str | int]) -> str:
    """The JSON pointer (RFC 6901) of a path of keys and indexes; `the root` for an empty one."""
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "/" + "/".join(parts) if parts else "the root"


def shorten(message: str, limit: int = 200) -> str:
    """A validator's message, which quotes the offending value, kept to one readable line."""
    line = " ".join(message.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"

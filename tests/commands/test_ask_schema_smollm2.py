"""The built-in SmolLM2 held to schemas by the grammar, through `wai ask` in a pipe: every reply,
greedy or sampled, is one line of JSON that satisfies its schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.vocab_fixture import builtin_vocab
from wai.schema import load_schema
from wai.schema.reply import parse_reply

__all__ = ["builtin_vocab"]

pytest.importorskip("llama_cpp")

SCHEMAS = {
    "enum and boolean": (
        "classify this support ticket: the export button crashes the app",
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["bug", "question", "praise"]},
                    "urgent": {"type": "boolean"},
                },
                "required": ["kind", "urgent"],
            }
        ),
    ),
    "integers and a bounded string": (
        "invent a person",
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "age": {"type": "integer"},
                    "children": {"type": "integer"},
                },
                "required": ["name", "age", "children"],
            }
        ),
    ),
    "nested arrays": (
        "list two fruits with their colours",
        json.dumps(
            {
                "type": "object",
                "properties": {
                    "fruits": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string", "maxLength": 20},
                                "colours": {
                                    "type": "array",
                                    "items": {"type": "string", "maxLength": 12},
                                    "minItems": 1,
                                    "maxItems": 3,
                                },
                            },
                            "required": ["name", "colours"],
                        },
                        "minItems": 1,
                        "maxItems": 3,
                    }
                },
                "required": ["fruits"],
            }
        ),
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("sampling", [("--temperature", "0"), ("--temperature", "0.8", "--seed", "42")])
@pytest.mark.parametrize("case", list(SCHEMAS))
def test_smollm2_replies_satisfy_their_schema(
    builtin_vocab: Path, case: str, sampling: tuple[str, ...]
) -> None:
    prompt, spec = SCHEMAS[case]
    done = run_wai(
        "ask",
        "-m",
        str(builtin_vocab),
        # One thread: the e2e suite runs beside other work, and llama.cpp's threads wait on each
        # other at every step, so two on two busy cores crawl (60 s for 300 tokens under load).
        "--threads",
        "1",
        "--max-tokens",
        "300",
        *sampling,
        "--schema",
        spec,
        prompt,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1, done.stdout
    parse_reply(done.stdout, load_schema(spec).document, finish_reason="stop")

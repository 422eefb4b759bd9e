"""llama.cpp held to a schema by its grammar sampler: noise cannot escape it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tiny_gguf import TinyModel, build_tiny_llama
from wai.backends.llama_cpp.stream import LlamaCppStream
from wai.backends.request import Request
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.errors import SchemaMismatch, UsageError
from wai.events import Event, Finish, Token
from wai.sampling import Sampling
from wai.schema import Schema, load_schema
from wai.schema.reply import parse_reply

pytest.importorskip("llama_cpp")

# Every value bounded: integers, booleans, enums, consts, strings held by lengths and a pattern,
# nested objects in a bounded array.
BOUNDED = load_schema(
    json.dumps(
        {
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "x": {"type": "number"},
                "ok": {"type": "boolean"},
                "kind": {"enum": ["cat", "dog", None, 3]},
                "name": {"type": "string", "maxLength": 6},
                "code": {"type": "string", "minLength": 2, "maxLength": 4},
                "word": {"type": "string", "pattern": "^[a-z]{1,4}$"},
                "tags": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"k": {"const": "v"}, "m": {"type": ["integer", "null"]}},
                        "required": ["k"],
                    },
                    "minItems": 1,
                    "maxItems": 3,
                },
            },
            "required": ["n", "x", "ok", "kind", "name", "code", "word", "tags"],
        }
    )
)


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Random weights over a vocabulary of every byte: left alone it writes garbage."""
    path = tmp_path_factory.mktemp("tiny-noise") / "noise.q8_0.gguf"
    return build_tiny_llama(path, ftype="q8_0", script="Hello world", noise=2.0, seed=1)


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppStream]:
    backend = LlamaCppStream(threads=1)
    yield backend
    backend.close()


def _request(
    model: TinyModel | Path, schema: Schema | None, sampling: Sampling, max_tokens: int = 200
) -> Request:
    path = model.path if isinstance(model, TinyModel) else model
    spec = ModelSpec(
        id="tiny", context_window=384, max_output=256, total_context=512, remote=False, gguf=str(path)
    )
    return Request(
        model=spec, messages=(Message("user", "hi"),), max_tokens=max_tokens, sampling=sampling, schema=schema
    )


def _reply(events: list[Event]) -> tuple[str, str]:
    text = "".join(e.text for e in events if isinstance(e, Token))
    finish = next(e.reason for e in events if isinstance(e, Finish))
    return text, finish


def test_noise_writes_no_json_without_the_schema(noise: TinyModel, backend: LlamaCppStream) -> None:
    text, _ = _reply(list(backend.stream(_request(noise, None, Sampling(temperature=1.0, seed=1)))))
    with pytest.raises(ValueError):
        json.loads(text)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.5])
def test_noise_held_to_a_bounded_schema_always_satisfies_it(
    noise: TinyModel, backend: LlamaCppStream, temperature: float
) -> None:
    for seed in range(8):
        sampling = Sampling(temperature=temperature, seed=seed, top_k=1000, top_p=1.0, repetition_penalty=1.3)
        text, finish = _reply(list(backend.stream(_request(noise, BOUNDED, sampling))))
        assert finish == "stop", text
        value = parse_reply(text, BOUNDED.document, finish_reason=finish)
        assert value["tags"][0]["k"] == "v"


def test_free_strings_under_noise_are_still_json(noise: TinyModel, backend: LlamaCppStream) -> None:
    schema = load_schema("name, bio: anything")
    for seed in range(8):
        sampling = Sampling(temperature=1.0, seed=seed)
        text, finish = _reply(list(backend.stream(_request(noise, schema, sampling, max_tokens=256))))
        if finish == "stop":  # no raw control character inside, no byte that is not UTF-8
            assert set(parse_reply(text, schema.document, finish_reason=finish)) == {"name", "bio"}
            assert "\ufffd" not in text


def test_a_reply_cut_by_the_cap_is_a_schema_mismatch(noise: TinyModel, backend: LlamaCppStream) -> None:
    request = _request(noise, BOUNDED, Sampling(temperature=0), max_tokens=5)
    text, finish = _reply(list(backend.stream(request)))
    assert finish == "length"
    with pytest.raises(SchemaMismatch, match=r"cut by the output window"):
        parse_reply(text, BOUNDED.document, finish_reason=finish)


def test_a_schema_the_grammar_cannot_hold_is_refused_before_loading(tmp_path: Path) -> None:
    backend = LlamaCppStream(threads=1)
    missing = tmp_path / "not-even-there.gguf"  # never opened: the refusal comes first
    schema = load_schema('{"type": "integer", "maximum": 9}')
    with pytest.raises(UsageError, match=r"cannot hold 'maximum'"):
        list(backend.stream(_request(missing, schema, Sampling(temperature=0))))


def test_a_grammar_llama_cpp_refuses_is_one_line(tiny_models: dict[str, TinyModel]) -> None:
    from wai.llama import native

    model = native.NativeModel.load(tiny_models["q8_0"].path, gpu_layers=0)
    try:
        with pytest.raises(native.GrammarError) as caught:
            native.Sampler(
                temperature=0,
                top_p=1,
                top_k=1,
                min_p=0,
                seed=None,
                grammar='root ::= "a" undefined',
                model=model,
            )
    finally:
        model.close()
    assert "\n" not in str(caught.value) and "llama.cpp refused the grammar" in str(caught.value)

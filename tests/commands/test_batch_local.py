"""`wai batch` on llama.cpp: the tiny deterministic models answer each record as `wai ask` does,
and a seed gives the same results whatever -j is."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_wai
from tests.support.tiny_gguf import SPLIT_SCRIPT, TinyModel

pytest.importorskip("llama_cpp")

ONE = ("--threads", "1")
PROMPTS = ["where is new york?", "name a colour", "count to three"]


def batch_texts(model: TinyModel, *options: str) -> list[str]:
    stdin = "".join(f"{prompt}\n" for prompt in PROMPTS).encode()
    done = run_wai("batch", "-m", str(model.path), *ONE, *options, stdin=stdin)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["index"] for line in lines] == [0, 1, 2]
    assert all(line["error"] is None and line["finish_reason"] == "stop" for line in lines)
    return [line["text"] for line in lines]


def test_each_record_gets_what_wai_ask_gets(tiny_models: dict[str, TinyModel]) -> None:
    model = tiny_models["q8_0"]
    asked = []
    for prompt in PROMPTS:
        done = run_wai("ask", "-m", str(model.path), *ONE, "--no-log", prompt)
        assert done.returncode == 0, done.stderr
        asked.append(done.stdout.removesuffix("\n"))
    assert batch_texts(model) == asked == [SPLIT_SCRIPT] * 3


@pytest.fixture(scope="module")
def noisy_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny model whose noise spreads its next-token odds over the vocabulary: sampled with a
    temperature, what it writes depends on the seed (the scripted models write their script
    whatever the seed, so no seed test could fail on them)."""
    from tests.support.tiny_gguf import SPLIT_WHOLE, build_tiny_llama

    path = tmp_path_factory.mktemp("noisy") / "noisy.f16.gguf"
    return build_tiny_llama(path, ftype="f16", script=SPLIT_SCRIPT, whole=SPLIT_WHOLE, noise=1.0, seed=3)


def test_seeded_results_do_not_depend_on_jobs(noisy_model: TinyModel) -> None:
    # Records of very different lengths, so that they end at different steps and slots are taken
    # over by later records in another order for each -j.
    prompts = ["hi", "word " * 60, "name a colour", "x " * 30, "count to three", "a b c d " * 25, "yo"]
    stdin = "".join(f"{prompt}\n" for prompt in prompts).encode()
    seeded = ("--seed", "7", "--temperature", "1.0", "--max-tokens", "12")

    def texts(*options: str) -> list[str]:
        done = run_wai("batch", "-m", str(noisy_model.path), *ONE, *seeded, *options, stdin=stdin)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert all(line["error"] is None for line in lines)
        return [line["text"] for line in lines]

    one = texts("-j", "1")
    assert len(set(one)) == len(prompts)  # the seed S + i gives each record its own sampling
    assert texts("-j", "4") == one
    assert texts("-j", "8") == one
    # Record i is sampled as `wai ask --seed 7+i` samples it.
    for index in (0, 1, 5):
        done = run_wai(
            "ask",
            "-m",
            str(noisy_model.path),
            *ONE,
            "--no-log",
            "--seed",
            str(7 + index),
            "--temperature",
            "1.0",
            "--max-tokens",
            "12",
            prompts[index],
        )
        assert done.stdout.removesuffix("\n") == one[index]

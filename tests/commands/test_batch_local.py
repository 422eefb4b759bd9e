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


def test_seeded_results_do_not_depend_on_jobs(tiny_models: dict[str, TinyModel]) -> None:
    model = tiny_models["f16"]
    seeded = ("--seed", "7", "--temperature", "1.5")
    one = batch_texts(model, *seeded, "-j", "1")
    assert batch_texts(model, *seeded, "-j", "4") == one
    # Record i is sampled as `wai ask --seed 7+i` samples it.
    for index, prompt in enumerate(PROMPTS):
        done = run_wai(
            "ask",
            "-m",
            str(model.path),
            *ONE,
            "--no-log",
            "--seed",
            str(7 + index),
            "--temperature",
            "1.5",
            prompt,
        )
        assert done.stdout.removesuffix("\n") == one[index]

"""`wai batch` on llama.cpp: the tiny deterministic models answer each record as `wai ask` does,
and a seed gives the same results whatever -j is."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import WAI, run_wai
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


@pytest.fixture(scope="module")
def looping(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Writes "Hi 🎉!" again and again: each record takes as long as --max-tokens lets it."""
    from tests.support.tiny_gguf import build_tiny_llama

    path = tmp_path_factory.mktemp("batch-loop") / "loop.q8_0.gguf"
    return build_tiny_llama(path, ftype="q8_0", script="Hi 🎉!", loop=True, context_length=1024)


# Enough that the batch is still decoding when the signal comes, however fast the machine.
RECORDS = 400


@pytest.mark.e2e
def test_ctrl_c_inside_batched_decoding_exits_130_and_resume_finishes(
    looping: TinyModel, tmp_path: Path
) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("".join(f"record {n}\n" for n in range(RECORDS)))
    command = [WAI, "batch", "-m", str(looping.path), *ONE, "-j", "4", "--max-tokens", "200"]
    command += ["-i", str(source), "-o", str(out)]
    child = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (out.exists() and out.read_bytes().count(b"\n") >= 2):
        assert time.monotonic() < deadline and child.poll() is None, child.communicate()
        time.sleep(0.01)
    child.send_signal(signal.SIGINT)  # while four sequences decode together
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    data = out.read_bytes()
    assert data.endswith(b"\n")
    first = [json.loads(line) for line in data.decode().splitlines()]
    assert 2 <= len(first) < RECORDS and all(line["error"] is None for line in first)
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(RECORDS))
    assert {line["text"] for line in lines} == {first[0]["text"]}
    assert {line["usage"]["completion_tokens"] for line in lines} == {200}

"""`wai batch` on llama.cpp: aggregate tokens per second of N records decoded together against one
after another (what `-j 1` does), for N = 2, 4, 8, 16, on 16 records of 64 tokens each.

The same backend, model and threads run both: one after another through `LlamaCpp.stream` (the
lone reply), and together through `LlamaCpp.stream_together` (batched decoding), each record
with its own prompt. The figure is tokens/s together over tokens/s alone, at each N.

llama.cpp's own `llama-batched-bench` measures the ceiling of that speed-up on the same machine
(the same model, threads and lengths): with WAI_BENCH_BATCHED_BENCH=PATH (its binary, built from
the llama.cpp inside the pinned llama-cpp-python source distribution) its speed-up at each N is
printed beside ours, and ours as a share of it (aim: at least 0.9x). Without it that part is
skipped with a note. Model: the built-in SmolLM2-135M-Instruct Q8_0 (`wai setup`); without it,
or in quick mode, a tiny generated model. WAI_BENCH_THREADS tunes the threads.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wai.backends.request import Request
    from wai.events import Event

from bench.common import Figures, bench_threads, q8_model, quick, sized

SEQUENCES = (2, 4, 8, 16)
PROMPT = "Record {n}: write a long story about {topic}, in many paragraphs."
TOPICS = ("a lighthouse keeper", "a robot who paints", "two rival bakers", "a train that never stops")


def _requests(path: Path, records: int, tokens: int) -> list[Request]:
    from wai.backends.llama_cpp.stream import spec_for_gguf
    from wai.backends.request import Request
    from wai.catalog.entries import load_catalog
    from wai.conversation import Message
    from wai.sampling import Sampling

    spec = spec_for_gguf(path, load_catalog())
    return [
        Request(
            model=spec,
            messages=(Message("user", PROMPT.format(n=n, topic=TOPICS[n % len(TOPICS)])),),
            max_tokens=tokens,
            sampling=Sampling(temperature=0),
        )
        for n in range(records)
    ]


def _produced(events: Sequence[Event]) -> int:
    from wai.events import Usage

    return sum(event.completion_tokens or 0 for event in events if isinstance(event, Usage))


def _batched_bench(path: Path, threads: int, tokens: int, prompt: int) -> dict[int, float] | None:
    """llama-batched-bench's speed-up of text generation at each N over N = 1, or None."""
    binary = os.environ.get("WAI_BENCH_BATCHED_BENCH")
    if not binary:
        print("llama-batched-bench: skipped (set WAI_BENCH_BATCHED_BENCH to its binary to compare)")
        return None
    npl = ",".join(str(n) for n in (1, *SEQUENCES))
    command = [
        binary, "-m", str(path), "-c", str((prompt + tokens) * max(SEQUENCES)), "-b", "512", "-ub", "512",
        "-npp", str(prompt), "-ntg", str(tokens), "-npl", npl, "-t", str(threads),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    speeds: dict[int, float] = {}
    for (
        line
    ) in done.stdout.splitlines():  # | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | ...
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and re.fullmatch(r"\d+", cells[2] or ""):
            speeds[int(cells[2])] = float(cells[7])
    return {n: speeds[n] / speeds[1] for n in SEQUENCES if n in speeds and 1 in speeds}


def main() -> Figures:
    from wai.backends.base import BackendSettings, LocalOptions
    from wai.backends.llama_cpp.backend import LlamaCpp

    records, tokens, threads = sized(16, 4), sized(64, 8), bench_threads()
    with tempfile.TemporaryDirectory(prefix="wai-bench-batch-") as scratch:
        path = q8_model(Path(scratch))
        print(f"{records} records x {tokens} tokens, {threads} threads")
        backend = LlamaCpp("local", BackendSettings(local=LocalOptions(threads=threads)))
        try:
            requests = _requests(path, records, tokens)
            list(backend.stream(requests[0]))  # load the model once
            started = time.perf_counter()
            alone = sum(_produced(list(backend.stream(r))) for r in requests)
            alone_rate = alone / (time.perf_counter() - started)
            print(f"-j 1: {alone_rate:.1f} tokens/s")
            figures: Figures = {}
            for n in SEQUENCES:
                started = time.perf_counter()
                ended = list(backend.stream_together(list(enumerate(requests)), n))
                seconds = time.perf_counter() - started
                produced = sum(_produced(events) for _, events in ended if isinstance(events, list))
                figures[f"-j {n} / -j 1 tokens/s"] = rate = produced / seconds / alone_rate
                print(f"-j {n}: {produced / seconds:.1f} tokens/s, {rate:.2f}x -j 1")
        finally:
            backend.close()
        prompt = 32
        ceiling = None if quick() else _batched_bench(path, threads, tokens, prompt)
    for n, speedup in (ceiling or {}).items():
        ours = figures[f"-j {n} / -j 1 tokens/s"]
        print(f"llama-batched-bench at {n}: {speedup:.2f}x; wai batch reaches {ours / speedup:.2f} of it")
    return figures


if __name__ == "__main__":
    main()

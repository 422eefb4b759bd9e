"""`wai batch` on llama.cpp: aggregate tokens per second of N records decoded together against one
after another (what `-j 1` does), for N = 2, 4, 8, 16, on 16 records of 64 tokens each.

The same backend, model and threads run both: one after another through `LlamaCpp.stream` (the
lone reply), and together through `LlamaCpp.stream_together` (batched decoding), each record
with its own prompt. The figure is tokens/s together over tokens/s alone, at each N.

llama.cpp's own `llama-batched-bench` measures the ceiling of that speed-up on the same machine
(the same model and threads, N sequences of as many prompt tokens as our records have on average
and 64 generated): its speed-up at each N is printed beside ours, and ours as a share of it (aim:
at least 0.9x). Ours times whole requests, the prompt read included, so the share is taken of its
speed-up over whole sequences (its `S t/s`: prompt and generated tokens over the whole time, which
at equal lengths is the same ratio as ours); its speed-up of decoding alone (`S_TG t/s`) is
printed beside it. It is built once from the llama.cpp inside the pinned
llama-cpp-python source distribution (bench/llama_tools.py), or taken from
WAI_BENCH_BATCHED_BENCH=PATH; where it cannot be had, that part is skipped with a note saying why.
Model: the built-in SmolLM2-135M-Instruct Q8_0 (`wai setup`); without it, or in quick mode, a tiny
generated model. WAI_BENCH_THREADS tunes the threads.
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

from bench.common import Figures, bench_threads, q8_model, sized
from bench.llama_tools import ToolsUnavailable, llama_tools

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


def _prompt_tokens(events: Sequence[Event]) -> int:
    from wai.events import Usage

    return sum(event.prompt_tokens or 0 for event in events if isinstance(event, Usage))


def _batched_bench_binary() -> str | None:
    """WAI_BENCH_BATCHED_BENCH, else the cached build (made first when missing, outside quick mode)."""
    binary = os.environ.get("WAI_BENCH_BATCHED_BENCH")
    if binary:
        return binary
    try:
        return str(llama_tools().batched_bench)
    except ToolsUnavailable as exc:
        print(f"llama-batched-bench: skipped ({exc})")
        return None


# Columns of llama-batched-bench's table:
# |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
DECODING, WHOLE = 7, 9


def _batched_bench(
    binary: str, path: Path, threads: int, tokens: int, prompt: int
) -> dict[int, tuple[float, float]]:
    """llama-batched-bench's speed-ups at each N over N = 1: of decoding alone and of whole sequences.

    llama.cpp's logger writes from a thread of its own that the program does not wait for at exit
    (llama.cpp issue 22142): the table's last rows may never be printed. So one sequence is
    measured again at the end, a row that may be lost, and a run that still lost a needed row
    (tiny models end within a millisecond) is run again."""
    npl = ",".join(str(n) for n in (1, *SEQUENCES, 1))
    command = [
        binary, "-m", str(path), "-c", str((prompt + tokens) * max(SEQUENCES)), "-b", "512", "-ub", "512",
        "-npp", str(prompt), "-ntg", str(tokens), "-npl", npl, "-t", str(threads),
    ]  # fmt: skip
    missing: list[str] = []
    for _ in range(3):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise RuntimeError(f"llama-batched-bench failed: {last}")
        decoding = batched_bench_speedups(done.stdout, DECODING)
        whole = batched_bench_speedups(done.stdout, WHOLE)
        missing = [str(n) for n in SEQUENCES if n not in decoding]
        if not missing:
            return {n: (decoding[n], whole[n]) for n in SEQUENCES}
    raise RuntimeError(f"llama-batched-bench printed no row for B = {', '.join(missing)} in 3 runs")


def batched_bench_speedups(table: str, column: int) -> dict[int, float]:
    """The speed-up at each batch size B over B = 1 in one column of llama-batched-bench's table
    (DECODING or WHOLE)."""
    speeds: dict[int, float] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > column and re.fullmatch(r"\d+", cells[2]):
            speeds.setdefault(int(cells[2]), float(cells[column]))  # the first row of each B
    if 1 not in speeds:
        raise RuntimeError("llama-batched-bench printed no row for one sequence (B = 1)")
    return {n: speed / speeds[1] for n, speed in speeds.items()}


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
            replies = [list(backend.stream(r)) for r in requests]
            alone_rate = sum(_produced(events) for events in replies) / (time.perf_counter() - started)
            prompt = round(sum(_prompt_tokens(events) for events in replies) / len(replies))
            print(f"-j 1: {alone_rate:.1f} tokens/s (prompts of {prompt} tokens on average)")
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
        binary = _batched_bench_binary()
        ceiling = _batched_bench(binary, path, threads, tokens, prompt) if binary else {}
    for n, (decoding, whole) in ceiling.items():
        ours = figures[f"-j {n} / -j 1 tokens/s"]
        figures[f"-j {n} / llama-batched-bench speed-up"] = share = ours / whole
        print(
            f"N = {n}: wai batch {ours:.2f}x; llama-batched-bench {whole:.2f}x whole sequences "
            f"({decoding:.2f}x decoding alone); wai reaches {share:.2f} of it"
        )
    if ceiling:
        print("(aim: at least 0.9 of llama-batched-bench's speed-up at every N)")
    return figures


if __name__ == "__main__":
    main()

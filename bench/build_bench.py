"""The installed llama.cpp build against another build of the same llama-cpp-python version: tokens
per second and time to first token on the same machine, model and threads, as ratios
(installed / other) measured in one run.

The other build is a folder holding an installed llama_cpp package (a `pip install --target DIR`
tree), named by WAI_BENCH_OTHER_BUILD; without it the benchmark says how to make one and is
skipped. What it is for: the cost of the portable build (AVX2, nothing beyond) that `make install`
makes, against a native build of the same version (`-march=native`, without AMX tiles).

Each side runs in a child process (build_child.py) whose sys.path puts its llama_cpp first; both
load the built-in SmolLM2-135M-Instruct Q8_0 and F16 files (`wai setup` installs them) with the
same context, batch and threads, and report `llama_print_system_info()`. Rounds alternate the
sides (A B, then B A, ...) so drift in the machine's load falls on both alike; each figure is the
median of the per-round ratios. Every round gives both sides the same prompt of a few hundred
tokens, evaluated whole (time to first token is mostly prompt processing), then GENERATED tokens.

Quick mode runs tiny generated models, and compares the installed build with itself when
WAI_BENCH_OTHER_BUILD is not set (to run the code, not to measure anything).
WAI_BENCH_THREADS (default: half the cores) and WAI_BENCH_ROUNDS (default 5) tune it.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.common import REPO, Figures, bench_rounds, bench_threads, builtin_pair, quick, sized, tiny_llamas

OTHER_ENV = "WAI_BENCH_OTHER_BUILD"
CHILD = Path(__file__).resolve().with_name("build_child.py")
TOPICS = ("a lighthouse keeper", "a robot who paints", "two rival bakers", "a train that never stops")
# The native build of the Makefile's `install-native`, into a folder of its own.
NATIVE_FLAGS = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


@dataclass(frozen=True, slots=True)
class Sizes:
    generated: int
    rounds: int
    prose: int  # characters of the README in each prompt
    n_ctx: int


def sizes() -> Sizes:
    generated, prose = sized((128, 1200), (8, 200))
    return Sizes(generated=generated, rounds=bench_rounds(5), prose=prose, n_ctx=sized(1024, 512))


def prompt_for(round_: int, size: Sizes) -> str:
    topic = TOPICS[round_ % len(TOPICS)]
    prose = (REPO / "README.md").read_text(encoding="utf-8")[: size.prose]
    return f"About {topic}.\n\n{prose}\n\nNow write a long, detailed story about {topic}."


@dataclass
class Side:
    """A child process running one build."""

    label: str
    build: Path | None  # None: the installed llama_cpp
    child: subprocess.Popen[str]
    errors: IO[str]
    about: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, label: str, build: Path | None, models: list[Path], size: Sizes) -> Side:
        args = {
            "build": str(build or ""),
            "models": [str(path) for path in models],
            "threads": bench_threads(),
            "n_ctx": size.n_ctx,
            "generated": size.generated,
        }
        # Kept open while the child runs (its stderr, read when it dies); close() closes it.
        errors = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        child = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        return cls(label, build, child, errors)

    def read(self) -> dict[str, Any]:
        assert self.child.stdout is not None
        line = self.child.stdout.readline()
        if not line:
            raise RuntimeError(self.death())
        answer = json.loads(line)
        assert isinstance(answer, dict)
        return answer

    def ready(self) -> None:
        self.about = self.read()

    def run(self, model: int, prompt: str) -> Run:
        assert self.child.stdin is not None
        self.child.stdin.write(json.dumps({"model": model, "prompt": prompt}) + "\n")
        self.child.stdin.flush()
        answer = self.read()
        tokens, first, total = int(answer["tokens"]), float(answer["first"]), float(answer["total"])
        rate = (tokens - 1) / (total - first) if tokens > 1 and total > first else float("nan")
        return Run(first_token=first, tokens_per_s=rate, tokens=tokens, prompt=int(answer["prompt"]))

    def death(self) -> str:
        """Why the child stopped answering: its exit (a signal by name) and its last error line."""
        code = self.child.wait()
        how = f"died of {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        self.errors.seek(0)
        lines = self.errors.read().strip().splitlines()
        return f"the {self.label} build's process {how}" + (f": {lines[-1]}" if lines else "")

    def close(self) -> None:
        if self.child.stdin is not None:
            self.child.stdin.close()
        try:
            self.child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
        if self.child.stdout is not None:
            self.child.stdout.close()
        self.errors.close()


@dataclass(frozen=True, slots=True)
class Run:
    first_token: float
    tokens_per_s: float
    tokens: int
    prompt: int


def how_to_build(version: str | None) -> str:
    pin = f"llama-cpp-python=={version}" if version else "llama-cpp-python"
    return (
        f"build_bench compares the installed llama.cpp with another build of {pin} on this machine.\n"
        f"Build one into a folder of its own (a native build without AMX tiles, for example):\n"
        f"  CMAKE_ARGS='-DGGML_NATIVE=ON' CFLAGS='{NATIVE_FLAGS}' CXXFLAGS='{NATIVE_FLAGS}' \\\n"
        f"    .venv/bin/pip install --no-deps --no-cache-dir --no-binary llama-cpp-python \\\n"
        f"    --target /tmp/llama-native '{pin}'\n"
        f"then run: {OTHER_ENV}=/tmp/llama-native .venv/bin/python -m bench.run build_bench"
    )


def other_build() -> Path | None:
    """The folder named by WAI_BENCH_OTHER_BUILD, checked to hold a llama_cpp package."""
    named = os.environ.get(OTHER_ENV, "")
    if not named:
        return None
    folder = Path(named).expanduser()
    if not (folder / "llama_cpp" / "__init__.py").is_file():
        raise RuntimeError(
            f"{OTHER_ENV}={named} holds no llama_cpp package (expected {folder / 'llama_cpp'}): "
            "give the folder of a `pip install --target` of llama-cpp-python"
        )
    return folder.resolve()


@contextmanager
def bench_models() -> Iterator[tuple[Path, Path] | None]:
    """The (Q8_0, F16) pair: the built-in SmolLM2's, tiny generated ones in quick mode."""
    if not quick():
        yield builtin_pair()
        return
    with tempfile.TemporaryDirectory(prefix="wai-bench-models-") as tmp:
        yield tiny_llamas(Path(tmp), words=64, layers=2, context=512)


def median_ratio(ours: list[Run], theirs: list[Run], field_name: str) -> float:
    return float(
        statistics.median(
            getattr(a, field_name) / getattr(b, field_name) for a, b in zip(ours, theirs, strict=True)
        )
    )


def describe(side: Side) -> None:
    where = "installed" if side.build is None else f"from {side.build}"
    print(f"  {side.label}: llama-cpp-python {side.about['version']} ({where})")
    print(f"    library {side.about['library']}")
    print(f"    {side.about['system_info']}")


def main() -> Figures:
    from wai.catalog.builtin import builtin_dir
    from wai.tokens.vocabularies import installed_version

    other = other_build()
    if other is None and not quick():
        print(how_to_build(installed_version()))
        print(f"skipped: {OTHER_ENV} is not set")
        return {}
    size = sizes()
    with bench_models() as pair:
        if pair is None:
            folder = builtin_dir()
            print(f"skipped: the built-in SmolLM2 Q8_0 and F16 files are not in {folder}: run `wai setup`")
            return {}
        labels = ("Q8_0", "F16")
        names = ("installed", "other") if other is not None else ("installed", "installed again")
        sides = [Side.start(names[0], None, list(pair), size), Side.start(names[1], other, list(pair), size)]
        try:
            for side in sides:
                side.ready()
            load = os.getloadavg()
            print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
            print(
                f"{size.generated} generated tokens after a prompt of a few hundred, greedy, "
                f"{bench_threads()} thread(s) on both sides, {size.rounds} alternating rounds; "
                "ratios are installed / other (medians of per-round ratios)"
            )
            print(f"models: {', '.join(str(path) for path in pair)}")
            for side in sides:
                describe(side)
            if sides[0].about["version"] != sides[1].about["version"]:
                print("  note: the two builds are of different llama-cpp-python versions")
            if other is not None and sides[0].about["system_info"] == sides[1].about["system_info"]:
                print("  note: both builds report the same instruction sets on this CPU")
            figures = compare(sides, labels, size)
        finally:
            for side in sides:
                side.close()
    return figures


def compare(sides: list[Side], labels: tuple[str, ...], size: Sizes) -> Figures:
    first, second = sides
    for model in range(len(labels)):  # page the files in and warm the caches, off the clock
        for side in sides:
            side.run(model, prompt_for(0, size))
    runs: dict[tuple[int, str], list[Run]] = {}
    for round_ in range(size.rounds):
        order = sides if round_ % 2 == 0 else sides[::-1]
        for model in range(len(labels)):
            for side in order:
                runs.setdefault((model, side.label), []).append(side.run(model, prompt_for(round_, size)))
    figures: Figures = {}
    for model, label in enumerate(labels):
        a, b = runs[(model, first.label)], runs[(model, second.label)]
        tps, ttft = median_ratio(a, b, "tokens_per_s"), median_ratio(a, b, "first_token")
        print(
            f"  {label:<5} tokens/s ratio {tps:.3f}   {first.label} "
            f"{statistics.median(r.tokens_per_s for r in a):.1f} / {second.label} "
            f"{statistics.median(r.tokens_per_s for r in b):.1f} tokens/s"
        )
        print(
            f"  {'':<5} TTFT ratio     {ttft:.3f}   {first.label} "
            f"{statistics.median(r.first_token for r in a) * 1e3:.1f} / {second.label} "
            f"{statistics.median(r.first_token for r in b) * 1e3:.1f} ms (lower is better)"
        )
        prompts = sorted({r.prompt for r in a + b})
        print(f"  {'':<5} prompts of {prompts[0]} to {prompts[-1]} tokens")
        figures[f"{label} tokens/s, installed / other"] = tps
        figures[f"{label} TTFT, installed / other"] = ttft
    return figures


if __name__ == "__main__":
    main()

"""What every benchmark shares: the quick mode, the figures they return, and the models they run.

Quick mode (`python -m bench.run --quick`, or WAI_BENCH_QUICK=1) runs every benchmark at tiny
sizes on tiny generated models, in a second or two each, so the test suite can run their code;
its figures are checked for presence, never for speed.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
QUICK_ENV = "WAI_BENCH_QUICK"
WAI = str(Path(sys.executable).with_name("wai"))

# What a benchmark's main() returns: each figure by name, a ratio of two measurements.
Figures = dict[str, float]

T = TypeVar("T")


def quick() -> bool:
    """Whether to run at tiny sizes (read at each call, so a test can set it late)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def sized(full: T, small: T) -> T:
    """`full` normally, `small` in quick mode."""
    return small if quick() else full


def bad_figures(figures: Figures) -> list[str]:
    """The figures that are not a finite, positive ratio, as `name = value`."""
    return [
        f"{name} = {value}" for name, value in figures.items() if not (math.isfinite(value) and value > 0)
    ]


def tiny_llamas(folder: Path, *, words: int, layers: int, context: int) -> tuple[Path, Path]:
    """A tiny llama that repeats `words` words forever (never stopping early), in Q8_0 and F16."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.support.tiny_gguf import build_tiny_llama

    script = " ".join(f"w{i}" for i in range(words))
    q8_0, f16 = (
        build_tiny_llama(
            folder / f"bench-tiny.{ftype}.gguf",
            ftype=ftype,
            script=script,
            loop=True,
            n_layer=layers,
            context_length=context,
        ).path
        for ftype in ("q8_0", "f16")
    )
    return q8_0, f16


# The loopback benchmarks' own catalog entry: the Llama-2 fp16 windows of the 2023 announcement,
# under an id of their own, so no change to the built-in catalog moves what they measure.
LOOPBACK_MODEL = "@cf/bench/llama-2-chat"
LOOPBACK_SHORT = "llama-2-chat"
_LOOPBACK_CATALOG = f"""\
[models."{LOOPBACK_MODEL}"]
context_window = 3072
max_output = 2500
total_context = 4096
family = "llama-2"
precision = "f16"
"""


def loopback_env(home: Path, base_url: str) -> dict[str, str]:
    """Environment for `wai` against the loopback server at `base_url`, with `home` as WAI_HOME
    holding the catalog entry LOOPBACK_MODEL (and nothing of the developer's own set-up)."""
    home.mkdir(parents=True, exist_ok=True)
    catalog = home / "models.toml"
    catalog.write_text(_LOOPBACK_CATALOG, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WAI_", "CLOUDFLARE_"))}
    env.update(
        WAI_HOME=str(home),
        WAI_MODELS=str(catalog),
        CLOUDFLARE_BASE_URL=base_url,
        CLOUDFLARE_ACCOUNT_ID="bench",
        CLOUDFLARE_API_TOKEN="bench",
    )
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure byte-compiled start-up, as installed
    return env


def builtin_pair() -> tuple[Path, Path] | None:
    """The built-in SmolLM2's Q8_0 and F16 files, where `wai setup` put them."""
    from wai.catalog.builtin import DERIVED_FILES, builtin_dir

    folder = builtin_dir()
    by_type = {ftype: folder / name for name, (ftype, _) in DERIVED_FILES.items()}
    pair = by_type["q8_0"], by_type["f16"]
    return pair if all(path.is_file() for path in pair) else None


def q8_model(scratch: Path) -> Path:
    """The model a decoding benchmark runs: the built-in SmolLM2 Q8_0, or in quick mode (or where
    `wai setup` has not run) a tiny generated llama in `scratch`; says which on stdout."""
    pair = None if quick() else builtin_pair()
    if pair is None:
        path, _ = tiny_llamas(scratch, words=24, layers=4, context=2048)
        why = "skipped" if quick() else "not installed"
        print(f"model: a tiny generated llama (built-in SmolLM2 {why})")
        return path
    print(f"model: {pair[0].name}")
    return pair[0]


def bench_threads() -> int:
    """Threads for llama.cpp on both sides of a comparison: WAI_BENCH_THREADS, else half the cores."""
    return int(os.environ.get("WAI_BENCH_THREADS", "0")) or max(1, (os.cpu_count() or 2) // 2)


def bench_rounds(full: int) -> int:
    """Alternating rounds of a llama.cpp comparison: WAI_BENCH_ROUNDS, else `full`; 2 in quick mode
    (one in each order)."""
    return 2 if quick() else int(os.environ.get("WAI_BENCH_ROUNDS", "0")) or full

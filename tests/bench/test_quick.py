"""`make bench`'s code keeps working: every benchmark runs in quick mode (tiny sizes, tiny
generated models) and returns each of its figures as a finite, positive ratio. Speed is never
asserted; a figure that is missing, NaN or zero means the benchmark's code broke."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.common import QUICK_ENV, bad_figures
from bench.run import BENCHES

REPO = Path(__file__).resolve().parents[2]
OTHER_ENV = "WAI_BENCH_OTHER_BUILD"

TOKENS_CASES = ("remote llama-2", "remote llama-3", "local qwen2 gguf")
TOKENS_RATIOS = ("count_text / Llama", "count_text / floor", "count_prompt / Llama", "count_prompt / floor")
EXPECTED: dict[str, set[str]] = {
    "startup_bench": {"wai --help / python", "wai ask / python"},
    "tokens_bench": {f"{case} {ratio}" for case in TOKENS_CASES for ratio in TOKENS_RATIOS},
    "panel_bench": {
        "panel / plain, 100 tokens",
        "naive / panel, 50 tokens",
        "panel, 100 / 50 tokens",
        "turn alone: naive / panel, 50 tokens",
        "turn alone: panel, 100 / 50 tokens",
        "paced panel: CPU / wall, 100 tokens",
    },
    "local_bench": {
        "loaded q8_0 tokens/s",
        "loaded q8_0 TTFT",
        "command q8_0 tokens/s",
        "command q8_0 TTFT",
        "Q8_0 / F16 tokens/s",
        "Q8_0 / F16 TTFT",
    },
    "repl_bench": {"wai chat Enter / wai ask launch, to first token"},
    "openai_bench": {
        "TTFT with /tokenize / without, new connection",
        "TTFT with /tokenize / without, connection open",
        "wai ask / raw httpx script",
    },
    "schema_bench": {"grammar / none decode tokens/s", "grammar / none TTFT"},
    "batch_local_bench": {f"-j {n} / -j 1 tokens/s" for n in (2, 4, 8, 16)},
    "serve_bench": {"wai serve --parallel 4 / 1 tokens/s", "wai serve --parallel 4 / 1 p95 TTFT"},
    "batch_bench": {"wai batch -j 16 / asyncio httpx", "shell loop of wai ask (scaled) / wai batch -j 16"},
    "resume_bench": {"resumed / scratch TTFT, short history", "resumed / scratch TTFT, long history"},
    "build_bench": {
        f"{model} {figure}, installed / other" for model in ("Q8_0", "F16") for figure in ("tokens/s", "TTFT")
    },
}


# The figures against llama.cpp's own tools, there when they are built (quick mode never builds them).
WITH_LLAMA_TOOLS: dict[str, set[str]] = {
    "batch_local_bench": {f"-j {n} / llama-batched-bench speed-up" for n in (2, 4, 8, 16)},
    "serve_bench": {"wai serve / llama-server tokens/s", "wai serve / llama-server p95 TTFT"},
}


def expected(name: str) -> set[str]:
    from bench.llama_tools import cached

    return EXPECTED[name] | (WITH_LLAMA_TOOLS.get(name, set()) if cached() else set())


@pytest.fixture
def restored_environ() -> Iterator[None]:
    """A benchmark may point WAI_HOME at its own scratch folder; the next test starts clean."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch, restored_environ: None) -> None:
    monkeypatch.setenv(QUICK_ENV, "1")
    monkeypatch.delenv(OTHER_ENV, raising=False)
    monkeypatch.delenv("WAI_BENCH_ROUNDS", raising=False)
    monkeypatch.delenv("WAI_BENCH_BATCHED_BENCH", raising=False)


def test_every_benchmark_is_checked() -> None:
    assert set(EXPECTED) == set(BENCHES)


@pytest.mark.e2e
@pytest.mark.parametrize("name", BENCHES)
def test_benchmark_produces_its_figures_in_quick_mode(
    name: str, quick: None, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = importlib.import_module(f"bench.{name}").main()
    printed = capsys.readouterr().out
    assert set(figures) == expected(name), printed
    assert bad_figures(figures) == [], printed


@pytest.mark.e2e
def test_build_bench_runs_the_other_build_from_its_folder(
    quick: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import llama_cpp

    folder = Path(llama_cpp.__file__).resolve().parent.parent  # a tree holding a llama_cpp package
    monkeypatch.setenv(OTHER_ENV, str(folder))
    from bench import build_bench

    figures = build_bench.main()
    printed = capsys.readouterr().out
    assert set(figures) == EXPECTED["build_bench"]
    assert bad_figures(figures) == []
    assert f"other: llama-cpp-python {llama_cpp.__version__} (from {folder})" in printed
    assert printed.count(f"library {folder / 'llama_cpp' / 'lib'}") == 2, printed
    assert printed.count("AVX2 = 1") == 2, printed  # each side's llama_print_system_info()


def test_build_bench_without_another_build_says_how_to_make_one_and_skips(
    monkeypatch: pytest.MonkeyPatch, restored_environ: None, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(QUICK_ENV, raising=False)
    monkeypatch.delenv(OTHER_ENV, raising=False)
    from bench import build_bench

    assert build_bench.main() == {}
    printed = capsys.readouterr().out
    assert "pip install --no-deps --no-cache-dir --no-binary llama-cpp-python" in printed
    assert "--target /tmp/llama-native 'llama-cpp-python==0.3." in printed
    assert printed.rstrip().endswith("skipped: WAI_BENCH_OTHER_BUILD is not set")


def test_build_bench_without_the_builtin_model_says_to_run_setup_and_skips(
    monkeypatch: pytest.MonkeyPatch, restored_environ: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import llama_cpp

    monkeypatch.delenv(QUICK_ENV, raising=False)
    monkeypatch.setenv(OTHER_ENV, str(Path(llama_cpp.__file__).parent.parent))
    from bench import build_bench

    assert build_bench.main() == {}
    last = capsys.readouterr().out.rstrip().splitlines()[-1]
    assert last.startswith("skipped: the built-in SmolLM2 Q8_0 and F16 files are not in ")
    assert last.endswith(": run `wai setup`")


def test_build_bench_names_a_folder_without_llama_cpp(
    quick: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(OTHER_ENV, str(tmp_path))
    from bench import build_bench

    with pytest.raises(RuntimeError, match=f"{OTHER_ENV}={tmp_path} holds no llama_cpp package"):
        build_bench.main()


@pytest.mark.e2e
def test_bench_run_refuses_an_unknown_benchmark() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "nonesuch"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("unknown benchmark 'nonesuch'\nusage: python -m bench.run [--quick]")
    assert done.stdout == ""

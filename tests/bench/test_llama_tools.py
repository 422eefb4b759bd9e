"""llama.cpp's own tools for the benchmarks: where they cannot be had, the benchmark that needs them
says why in one line and goes on; the cache is never left half made; llama-batched-bench's table is
read as the real binary prints it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bench.batch_local_bench import DECODING, WHOLE, batched_bench_speedups
from bench.common import QUICK_ENV

from bench import llama_tools

# As llama-batched-bench of llama-cpp-python 0.3.36's llama.cpp prints it on stdout (its log goes to
# stderr), for -npp 32 -ntg 8 -npl 1,2,4,1.
REAL_TABLE = """
llama_batched_bench: n_kv_max = 1024, n_batch = 512, n_ubatch = 512, flash_attn = -1, is_pp_shared = 0, \
is_tg_separate = 0, n_gpu_layers = -1, n_threads = 1, n_threads_batch = 1

|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |
|-------|--------|------|--------|----------|----------|----------|----------|----------|----------|
|    32 |      8 |    1 |     40 |    0.001 | 22206.80 |    0.001 |  9779.95 |    0.002 | 17706.95 |
|    32 |      8 |    2 |     80 |    0.002 | 29948.53 |    0.001 | 14134.28 |    0.003 | 24472.32 |
|    32 |      8 |    4 |    160 |    0.004 | 29391.51 |    0.002 | 13411.57 |    0.007 | 23735.35 |
|    32 |      8 |    1 |     40 |    0.001 | 26622.30 |    0.001 | 10050.25 |    0.002 | 20020.02 |
"""


def test_the_speed_ups_are_of_decoding_and_of_whole_sequences_at_each_batch_size_over_one() -> None:
    """The first row of each B counts: the benchmark measures B = 1 again last, as a row that
    llama.cpp's logger may lose at exit."""
    decoding = batched_bench_speedups(REAL_TABLE, DECODING)
    assert decoding == pytest.approx({1: 1.0, 2: 14134.28 / 9779.95, 4: 13411.57 / 9779.95})
    whole = batched_bench_speedups(REAL_TABLE, WHOLE)
    assert whole == pytest.approx({1: 1.0, 2: 24472.32 / 17706.95, 4: 23735.35 / 17706.95})


def test_a_table_without_the_one_sequence_row_is_an_error() -> None:
    rows = [line for line in REAL_TABLE.splitlines() if "|    1 |" not in line]
    assert len(rows) == len(REAL_TABLE.splitlines()) - 2
    with pytest.raises(RuntimeError, match=r"no row for one sequence"):
        batched_bench_speedups("\n".join(rows), WHOLE)


def test_the_build_takes_the_makefiles_portable_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    args = llama_tools.cmake_args()
    for flag in ("-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_AVX512=OFF", "-DGGML_AMX_INT8=OFF"):
        assert flag in args
    assert "-DBUILD_SHARED_LIBS=OFF" in args
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert llama_tools.cache_folder("0.3.36").parent == tmp_path / "wai" / "llama-tools"
    assert llama_tools.cache_folder("0.3.36").name.startswith("0.3.36-portable-")


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_quick_mode_never_builds(monkeypatch: pytest.MonkeyPatch, empty_cache: Path) -> None:
    monkeypatch.setenv(QUICK_ENV, "1")
    with pytest.raises(llama_tools.ToolsUnavailable, match=r"quick mode never builds them"):
        llama_tools.llama_tools()
    assert not empty_cache.exists()


def test_without_cmake_the_tools_are_unavailable(monkeypatch: pytest.MonkeyPatch, empty_cache: Path) -> None:
    monkeypatch.setenv("PATH", str(empty_cache))
    with pytest.raises(llama_tools.ToolsUnavailable, match=r"^cmake is not installed"):
        llama_tools.llama_tools(build=True)


@pytest.mark.e2e
def test_without_the_source_nothing_is_left_in_the_cache(
    monkeypatch: pytest.MonkeyPatch, empty_cache: Path, tmp_path: Path
) -> None:
    """No index and no local archive: pip cannot fetch the source (as on a machine offline)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(llama_tools.ToolsUnavailable) as raised:
        llama_tools.llama_tools(build=True)
    message = str(raised.value)
    assert message.startswith(
        f"could not download llama-cpp-python {llama_tools.pinned_version()}'s source: "
    )
    assert "\n" not in message
    assert list((empty_cache / "wai" / "llama-tools").iterdir()) == []


@pytest.mark.e2e
def test_serve_bench_without_llama_server_says_why_and_measures_wai_alone(
    monkeypatch: pytest.MonkeyPatch, empty_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench import serve_bench

    monkeypatch.setenv(QUICK_ENV, "1")
    figures = serve_bench.main()
    printed = capsys.readouterr().out
    assert (
        "llama-server: skipped (llama.cpp's llama-server and llama-batched-bench are not built in " in printed
    )
    assert not any("llama-server" in name for name in figures)
    assert "  wai serve " in printed

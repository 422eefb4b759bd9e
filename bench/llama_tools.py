"""llama.cpp's own `llama-server` and `llama-batched-bench`, the baselines of the batch and serve
benchmarks, built once from the llama.cpp inside the pinned llama-cpp-python source distribution
(its `vendor/llama.cpp`) with the Makefile's portable CPU flags, and kept in a cache:

    $XDG_CACHE_HOME/wai/llama-tools/VERSION-portable-KEY/   (else ~/.cache/wai/llama-tools/...)

KEY is made of the cmake arguments, so other flags make another build. The build goes into a
folder of its own beside the cache entry and is renamed into place when whole: a build that
fails or is interrupted never leaves a half entry. `python -m bench.llama_tools` builds ahead of
time and prints where the binaries are.

Where they cannot be built (no cmake or C++ compiler, no network to fetch the source, a failed
build), `ToolsUnavailable` says why in one line and the benchmark that needs them skips that part.
Quick mode never builds: it takes the cache when it is there.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, quick

TARGETS = ("llama-server", "llama-batched-bench")
# Everything but the two tools is left out; nothing is fetched at build time (the server's page
# would be downloaded from Hugging Face otherwise); a static build needs no library beside it.
_BUILD_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


class ToolsUnavailable(Exception):
    """The tools are not there and cannot be built here; the message says why, in one line."""


@dataclass(frozen=True)
class LlamaTools:
    folder: Path

    @property
    def server(self) -> Path:
        return self.folder / "llama-server"

    @property
    def batched_bench(self) -> Path:
        return self.folder / "llama-batched-bench"


def pinned_version() -> str:
    """The llama-cpp-python version pyproject.toml pins (the one the Makefile builds)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in project["optional-dependencies"]["local"]:
        found = re.fullmatch(r"llama-cpp-python==([\w.]+)", requirement.replace(" ", ""))
        if found:
            return found.group(1)
    raise ToolsUnavailable("pyproject.toml pins no llama-cpp-python version")


def portable_cpu_args() -> list[str]:
    """The Makefile's PORTABLE_CPU cmake arguments, read from the Makefile so that the two stay one."""
    text = (REPO / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    found = re.search(r"^PORTABLE_CPU\s*:=(.*)$", text, re.MULTILINE)
    if not found:
        raise ToolsUnavailable("the Makefile defines no PORTABLE_CPU")
    return found.group(1).split()


def cmake_args() -> list[str]:
    return [*_BUILD_ARGS, *portable_cpu_args()]


def cache_folder(version: str | None = None) -> Path:
    """Where the tools of this version and these flags are kept."""
    version = version or pinned_version()
    key = hashlib.sha256("\n".join([version, *cmake_args()]).encode()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "wai" / "llama-tools" / f"{version}-portable-{key}"


def cached() -> LlamaTools | None:
    """The tools, when a whole build of them is in the cache."""
    tools = LlamaTools(cache_folder())
    whole = all(os.access(tools.folder / name, os.X_OK) for name in TARGETS)
    return tools if whole else None


def llama_tools(*, build: bool | None = None) -> LlamaTools:
    """The cached tools, built first when missing and `build` (default: not in quick mode);
    raises ToolsUnavailable saying why they cannot be had."""
    tools = cached()
    if tools is not None:
        return tools
    if not (not quick() if build is None else build):
        raise ToolsUnavailable(
            f"llama.cpp's {' and '.join(TARGETS)} are not built in {cache_folder()} and quick mode "
            "never builds them (`python -m bench.llama_tools` does)"
        )
    return _build(pinned_version())


def _build(version: str) -> LlamaTools:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise ToolsUnavailable("cmake is not installed: it builds llama.cpp's tools")
    if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        raise ToolsUnavailable("no C++ compiler (c++, g++ or clang++) to build llama.cpp's tools")
    folder = cache_folder(version)
    folder.parent.mkdir(parents=True, exist_ok=True)
    jobs = str(os.cpu_count() or 2)
    print(
        f"building llama.cpp's {' and '.join(TARGETS)} from llama-cpp-python {version}'s source "
        f"(portable), once, into {folder}: several minutes on {jobs} cores",
        flush=True,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wai-llama-tools-") as scratch_name:
        scratch = Path(scratch_name)
        source = _source(version, scratch)
        build = scratch / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        configure = [cmake, "-S", str(source), "-B", str(build), *generator, *cmake_args()]
        _step(configure, "configure llama.cpp's tools", scratch / "configure.log")
        _step(
            [cmake, "--build", str(build), "--target", *TARGETS, "-j", jobs],
            f"build {' and '.join(TARGETS)}",
            scratch / "build.log",
        )
        part = Path(tempfile.mkdtemp(prefix=f"{folder.name}.part-", dir=folder.parent))
        try:
            part.chmod(0o755)  # mkdtemp's 0700 would hide the tools from the machine's other users
            for name in TARGETS:
                shutil.copy2(build / "bin" / name, part / name)
            minutes = (time.perf_counter() - started) / 60
            (part / "BUILD.txt").write_text(
                f"llama-cpp-python {version} vendor/llama.cpp, {minutes:.1f} min\n"
                f"cmake {' '.join(cmake_args())}\n",
                encoding="utf-8",
            )
            try:
                part.rename(folder)
            except OSError:  # another build finished first: its entry is as good as this one
                if cached() is None:
                    raise
        finally:
            shutil.rmtree(part, ignore_errors=True)
    print(f"built in {(time.perf_counter() - started) / 60:.1f} min", flush=True)
    return LlamaTools(folder)


def _source(version: str, scratch: Path) -> Path:
    """llama-cpp-python's source distribution, fetched by pip and unpacked: its vendor/llama.cpp."""
    download = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
        "--dest", str(scratch), f"llama-cpp-python=={version}",
    ]  # fmt: skip
    _step(download, f"download llama-cpp-python {version}'s source", scratch / "download.log")
    archives = sorted(scratch.glob("llama_cpp_python-*.tar.gz"))
    if not archives:
        raise ToolsUnavailable(f"pip fetched no source archive of llama-cpp-python {version}")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(scratch / "sdist", filter="data")
    found = sorted((scratch / "sdist").glob("*/vendor/llama.cpp/CMakeLists.txt"))
    if not found:
        raise ToolsUnavailable(f"llama-cpp-python {version}'s source holds no vendor/llama.cpp")
    return found[0].parent


def _step(command: list[str], what: str, log: Path) -> None:
    """Runs one step of the build, its output kept in `log`; a failure says what could not be done,
    with the log's last line."""
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line]
        last = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise ToolsUnavailable(f"could not {what}: {last}")


def main() -> int:
    try:
        tools = llama_tools(build=True)
    except ToolsUnavailable as exc:
        print(f"wai: {exc}", file=sys.stderr)
        return 1
    for path in (tools.server, tools.batched_bench):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does the installed llama.cpp run on this CPU? A child process loads a model and decodes with it.

A build may use instructions that the CPU advertises but cannot run: a hypervisor can list AMX
or AVX-512 in CPUID and still trap the first such instruction. The process then dies of SIGILL
with no word of explanation. Run in a child, that death becomes a verdict: `wai setup` reports
it, stores it beside the user's files, and `wai models` and the local backend read it back.

`python -m wai.llama.check MODEL...` is the child. It prints llama.cpp's system info
before it decodes anything, so the parent knows which instruction sets a crashing build uses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REBUILD_HINT = (
    "rebuild it portably: `make install-portable` in wai's checkout, or `CMAKE_ARGS=-DGGML_NATIVE=OFF "
    "pip install --force-reinstall --no-cache-dir llama-cpp-python` elsewhere"
)
VERDICT_FILE = "llama-check.json"
# For the tests: the child raises this signal itself instead of decoding, so the parent's report
# of a real signal death can be checked on any machine.
FAULT_ENV = "WAI_LLAMA_CHECK_FAULT"
_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    build: str  # llama-cpp-python's version and the build's system info: the check is per build
    features: list[str]
    checked_at: float
    problem: str | None = None  # one line when not ok

    @property
    def signal_name(self) -> str | None:
        return self.problem.split(" ", 1)[0] if self.problem and self.problem.startswith("SIG") else None


def system_info() -> str:
    """llama.cpp's `llama_print_system_info()`: the instruction sets and backends of this build."""
    from wai.llama.native import lib

    return str(lib().llama_print_system_info().decode("utf-8", errors="replace")).strip()


def features(info: str) -> list[str]:
    """The names the system info turns on (`AVX2 = 1`), once each, in their order."""
    names: list[str] = []
    for part in info.replace("|", " | ").split("|"):
        name, _, value = part.partition("=")
        name = name.rsplit(":", 1)[-1].strip()  # "CPU : SSE3" names SSE3 of the CPU backend
        if value.strip() == "1" and name not in names:
            names.append(name)
    return names


def build_id(info: str) -> str:
    from wai.llama.native import version

    return f"llama-cpp-python {version()}; {info}"


def run_check(models: list[Path], *, timeout: float = _TIMEOUT) -> Verdict:
    """Decode with each model in a child process; the child's death by a signal is the verdict."""
    command = [sys.executable, "-m", "wai.llama.check", *map(str, models)]
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return _verdict(None, f"the check did not finish within {timeout:.0f} s")
    info = _first_json_line(child.stdout)
    if child.returncode < 0:
        name = _signal_name(-child.returncode)
        return _verdict(info, f"{name} ({_signal_meaning(-child.returncode)}) while decoding")
    if child.returncode != 0:
        last = next((line for line in reversed(child.stderr.splitlines()) if line.strip()), "")
        return _verdict(info, f"the check failed (exit {child.returncode}): {last.strip()[:300]}")
    return _verdict(info, None)


def _first_json_line(output: str) -> str | None:
    try:
        info = json.loads(output.splitlines()[0])
    except (IndexError, ValueError):
        return None
    return info if isinstance(info, str) else None


def _verdict(info: str | None, problem: str | None) -> Verdict:
    info = info if info is not None else system_info()
    return Verdict(
        ok=problem is None,
        build=build_id(info),
        features=features(info),
        checked_at=time.time(),
        problem=problem,
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _signal_meaning(number: int) -> str:
    meanings: dict[int, str] = {
        signal.SIGILL: "an instruction this CPU does not run",
        signal.SIGSEGV: "a memory fault",
        signal.SIGBUS: "a memory fault",
        signal.SIGFPE: "an arithmetic fault",
        signal.SIGKILL: "killed, perhaps out of memory",
    }
    return meanings.get(number, "killed")


def failure_line(verdict: Verdict) -> str:
    """The one line a user reads when the build failed its check: a crash means rebuild."""
    if verdict.signal_name is None:
        return (
            f"llama.cpp failed its check on this CPU: {verdict.problem}; "
            "run `wai setup` again (it re-makes damaged built-in files and checks again)"
        )
    sets = ", ".join(verdict.features) or "unknown instruction sets"
    return (
        f"llama.cpp failed its check on this CPU: {verdict.problem}; the build uses {sets}; "
        f"{REBUILD_HINT}; then `wai setup` checks it again"
    )


def save(verdict: Verdict, home: Path) -> bool:
    """Stored for `wai models` and the local backend; False when the folder cannot be written."""
    path = home / VERDICT_FILE
    try:
        home.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(asdict(verdict), indent=1), encoding="utf-8")
        os.replace(partial, path)
    except OSError:
        return False
    return True


def load(home: Path) -> Verdict | None:
    try:
        raw = json.loads((home / VERDICT_FILE).read_text(encoding="utf-8"))
        return Verdict(**raw)
    except (OSError, ValueError, TypeError):
        return None


def current_verdict(home: Path) -> Verdict | None:
    """The stored verdict when it is about the build installed now, else None."""
    verdict = load(home)
    return verdict if verdict is not None and verdict.build == build_id(system_info()) else None


def require_working_build(home: Path, models: list[Path]) -> None:
    """Before the first load of a process: a build known to crash is refused with what to do.

    With no verdict yet for this build, `models` (the built-in model, when installed) are
    checked once and the verdict stored; with none at hand the build is trusted.
    """
    verdict = current_verdict(home)
    if verdict is None and models:
        verdict = run_check(models)
        save(verdict, home)
    # Only a crash condemns the build; a check that failed otherwise (a damaged built-in file)
    # says nothing about the user's own model.
    if verdict is not None and verdict.signal_name is not None:
        from wai.errors import BackendError

        raise BackendError(failure_line(verdict))


def _child(models: list[str]) -> int:
    from wai.llama.native import NativeContext, NativeModel, Sampler, default_threads

    print(json.dumps(system_info()), flush=True)  # before anything can crash
    fault = os.environ.get(FAULT_ENV)
    if fault:
        signal.raise_signal(signal.Signals[fault])
    threads, threads_batch = default_threads()
    for path in models:
        model = NativeModel.load(Path(path), gpu_layers=0)
        context = NativeContext(model, n_ctx=64, threads=threads, threads_batch=threads_batch)
        sampler = Sampler(temperature=0, top_p=1, top_k=1, min_p=0, seed=None)
        context.decode(
            model.tokenize("The check of a build: one, two, three,", add_special=True, parse_special=False)
        )
        for _ in range(4):
            token = sampler.sample(context)
            context.decode_one(token)
        sampler.close()
        context.close()
        model.close()
    print("ok", flush=True)
    return 0


def _crashed() -> int:
    """`--crashed`: exit 0 when the stored verdict says this build crashed (for `make install-native`)."""
    from wai.settings import wai_home

    verdict = current_verdict(wai_home())
    return 0 if verdict is not None and verdict.signal_name is not None else 1


if __name__ == "__main__":
    raise SystemExit(_crashed() if sys.argv[1:] == ["--crashed"] else _child(sys.argv[1:]))

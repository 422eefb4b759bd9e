"""Start-up cost: `wai --help`, `wai ask --help` and a whole `wai ask` against the loopback server,
as ratios to `python -c pass` measured in the same run (wall time, best of N to shed scheduling
noise).

Given another install's `wai` (WAI_BENCH_BASELINE=/path/to/bin/wai, or the path as the argument of
`python -m bench.startup_bench`), each command is also timed against that one: runs of the two
alternate (the order swapping each round, so a burst of load on a shared machine falls on both),
and the figure is the ratio of their medians, below 1.0 when this install starts faster.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.workers_ai_server import Simulation, WorkersAIServer

from bench.common import LOOPBACK_MODEL, WAI, Figures, loopback_env, sized

BASELINE_ENV = "WAI_BENCH_BASELINE"
COMMANDS = {
    "wai --help": ["--help"],
    "wai ask --help": ["ask", "--help"],
    "wai ask (loopback)": ["ask", "-m", LOOPBACK_MODEL, "hi"],
}


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of `command`."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", errors="replace").strip()[-300:]
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {why}")
    return elapsed, (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)


def best_of(command: list[str], env: dict[str, str], rounds: int) -> float:
    return min(timed(command, env)[0] for _ in range(rounds))


def interleaved_medians(
    ours: list[str], theirs: list[str], env: dict[str, str], rounds: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Medians of wall and CPU time of `rounds` runs of each command, run alternately, the first to
    go swapping: ((ours wall, ours CPU), (theirs wall, theirs CPU))."""
    mine: list[tuple[float, float]] = []
    other: list[tuple[float, float]] = []
    for round_ in range(rounds):
        if round_ % 2:
            other.append(timed(theirs, env))
            mine.append(timed(ours, env))
        else:
            mine.append(timed(ours, env))
            other.append(timed(theirs, env))

    def medians(runs: list[tuple[float, float]]) -> tuple[float, float]:
        return statistics.median(wall for wall, _ in runs), statistics.median(cpu for _, cpu in runs)

    return medians(mine), medians(other)


def against_baseline(baseline: str, env: dict[str, str]) -> Figures:
    rounds = sized(21, 2)
    print(f"\nagainst {baseline}: ratio of medians, {rounds} interleaved runs each (wall; CPU)")
    figures: Figures = {}
    for name, arguments in COMMANDS.items():
        (wall, cpu), (their_wall, their_cpu) = interleaved_medians(
            [WAI, *arguments], [baseline, *arguments], env, rounds
        )
        wall_ratio, cpu_ratio = wall / their_wall, cpu / max(their_cpu, 1e-6)
        figures[f"{name} / baseline, wall"] = wall_ratio
        # CPU time is steadier than wall time on a machine others keep busy.
        figures[f"{name} / baseline, CPU"] = cpu_ratio
        print(
            f"{name:<22}{wall_ratio:.2f}x  ({wall * 1000:.0f} ms against {their_wall * 1000:.0f} ms);"
            f"  CPU {cpu_ratio:.2f}x  ({cpu * 1000:.0f} ms against {their_cpu * 1000:.0f} ms)"
        )
    return figures


def main(baseline: str | None = None) -> Figures:
    import compileall

    import wai

    # A normal install has byte-compiled modules; measure that, not a first-run compile.
    compileall.compile_dir(str(Path(wai.__file__).parent), quiet=1)
    baseline = baseline or os.environ.get(BASELINE_ENV) or None
    rounds = sized(15, 1)
    with (
        tempfile.TemporaryDirectory(prefix="wai-bench-home-") as home,
        WorkersAIServer(Simulation(reply_tokens=20)) as server,
    ):
        env = loopback_env(Path(home), server.base_url)
        python = best_of([sys.executable, "-c", "pass"], env, rounds)
        help_time = best_of([WAI, "--help"], env, rounds)
        ask_time = best_of([WAI, *COMMANDS["wai ask (loopback)"]], env, rounds)
        print(f"python -c pass        1.00   ({python * 1000:.0f} ms, the baseline; best of {rounds})")
        print(f"wai --help            {help_time / python:.2f}x  ({help_time * 1000:.0f} ms)")
        print(f"wai ask (loopback)    {ask_time / python:.2f}x  ({ask_time * 1000:.0f} ms, 20-token reply)")
        figures = {"wai --help / python": help_time / python, "wai ask / python": ask_time / python}
        if baseline:
            figures |= against_baseline(baseline, env)
        else:
            print(f"(set {BASELINE_ENV} to another install's wai to compare start-up with it)")
    return figures


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main(sys.argv[1] if len(sys.argv) > 1 else None)

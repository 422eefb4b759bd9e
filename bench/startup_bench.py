"""Start-up cost: `wai --help` and a whole `wai ask` against the loopback server, as ratios to
`python -c pass` measured in the same run (wall time, best of N to shed scheduling noise)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.workers_ai_server import Simulation, WorkersAIServer

from bench.common import LOOPBACK_MODEL, WAI, Figures, loopback_env, sized


def best_of(command: list[str], env: dict[str, str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        done = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            why = done.stderr.decode("utf-8", errors="replace").strip()[-300:]
            raise RuntimeError(f"{' '.join(command[1:]) or command[0]} exited {done.returncode}: {why}")
    return min(times)


def main() -> Figures:
    import compileall

    import wai

    # A normal install has byte-compiled modules; measure that, not a first-run compile.
    compileall.compile_dir(str(Path(wai.__file__).parent), quiet=1)
    rounds = sized(15, 1)
    with (
        tempfile.TemporaryDirectory(prefix="wai-bench-home-") as home,
        WorkersAIServer(Simulation(reply_tokens=20)) as server,
    ):
        env = loopback_env(Path(home), server.base_url)
        baseline = best_of([sys.executable, "-c", "pass"], env, rounds)
        help_time = best_of([WAI, "--help"], env, rounds)
        ask_time = best_of([WAI, "ask", "-m", LOOPBACK_MODEL, "hi"], env, rounds)
    print(f"python -c pass        1.00   ({baseline * 1000:.0f} ms, the baseline; best of {rounds})")
    print(f"wai --help            {help_time / baseline:.2f}x  ({help_time * 1000:.0f} ms)")
    print(f"wai ask (loopback)    {ask_time / baseline:.2f}x  ({ask_time * 1000:.0f} ms, 20-token reply)")
    return {"wai --help / python": help_time / baseline, "wai ask / python": ask_time / baseline}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()

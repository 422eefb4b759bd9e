"""Start-up cost: `wai --help` and a whole `wai ask` against the loopback server, as ratios to
`python -c pass` measured in the same run (wall time, best of N to shed scheduling noise)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.support.workers_ai_server import Simulation, WorkersAIServer

ROUNDS = 15
WAI = str(Path(sys.executable).with_name("wai"))


def best_of(command: list[str], env: dict[str, str], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    import compileall

    import wai

    # A normal install has byte-compiled modules; measure that, not a first-run compile.
    compileall.compile_dir(str(Path(wai.__file__).parent), quiet=1)
    env = {**os.environ, "WAI_HOME": str(Path(os.environ.get("TMPDIR", "/tmp")) / "wai-bench-home")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with WorkersAIServer(Simulation(reply_tokens=20)) as server:
        env.update(
            CLOUDFLARE_BASE_URL=server.base_url, CLOUDFLARE_ACCOUNT_ID="bench", CLOUDFLARE_API_TOKEN="bench"
        )
        baseline = best_of([sys.executable, "-c", "pass"], env)
        help_time = best_of([WAI, "--help"], env)
        ask_time = best_of([WAI, "ask", "-m", "@cf/meta/llama-2-7b-chat-int8", "hi"], env)
    print(f"python -c pass        1.00   ({baseline * 1000:.0f} ms, the baseline)")
    print(f"wai --help            {help_time / baseline:.2f}x  ({help_time * 1000:.0f} ms)")
    print(f"wai ask (loopback)    {ask_time / baseline:.2f}x  ({ask_time * 1000:.0f} ms, 20-token reply)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()

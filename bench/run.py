"""`make bench`: every benchmark, each printing ratios against a baseline measured in the same run.

Run it on a quiet machine: llama.cpp's threads slow to a crawl when another busy process
competes for the cores, and every figure here is a ratio of two runs that share that machine.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCHES = ("startup_bench", "tokens_bench", "panel_bench", "local_bench", "repl_bench")


def main() -> int:
    load = os.getloadavg()[0]
    print(f"# wai benchmarks; load average at start {load:.2f} on {os.cpu_count()} cores")
    if load > 0.5:
        print("# warning: the machine is busy; ratios involving llama.cpp will be noisy")
    selected = sys.argv[1:] or list(BENCHES)
    failed = 0
    for name in selected:
        print(f"\n## {name}")
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            print(f"skipped: {exc}")
            continue
        saved = dict(os.environ)
        try:
            module.main()
        except Exception as exc:  # one broken bench must not hide the others' figures
            failed += 1
            print(f"FAILED: {type(exc).__name__}: {exc}")
        finally:  # a bench may point WAI_HOME at a scratch folder; the next one starts clean
            os.environ.clear()
            os.environ.update(saved)
        print(f"({time.perf_counter() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

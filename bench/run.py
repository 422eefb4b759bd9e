"""`make bench`: every benchmark, each printing ratios against a baseline measured in the same run.

    python -m bench.run [--quick] [NAME ...]

`--quick` runs each at tiny sizes on tiny generated models (a second or two each; the test suite
runs them so), to check that the code works: its figures mean nothing.

Run it on a quiet machine: llama.cpp's threads slow to a crawl when another busy process
competes for the cores, and every figure here is a ratio of two runs that share that machine.
A benchmark fails when it raises or when one of its figures is not a finite, positive ratio.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import QUICK_ENV, bad_figures, quick

BENCHES = (
    "startup_bench",
    "tokens_bench",
    "panel_bench",
    "local_bench",
    "repl_bench",
    "build_bench",
    "openai_bench",
    "schema_bench",
    "batch_bench",
    "resume_bench",
    "batch_local_bench",
    "serve_bench",
)
# What a remote-only install lacks: a benchmark that needs one of them is skipped, not failed.
OPTIONAL = ("llama_cpp", "gguf", "numpy", "pexpect", "jinja2")
USAGE = f"usage: python -m bench.run [--quick] [NAME ...]   (names: {', '.join(BENCHES)})"


def main(argv: list[str]) -> int:
    if "--quick" in argv:
        os.environ[QUICK_ENV] = "1"
    selected = [arg for arg in argv if arg != "--quick"] or list(BENCHES)
    unknown = [name for name in selected if name not in BENCHES]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0]
    mode = "quick mode (tiny sizes; the figures only show that the code runs)" if quick() else "full"
    print(f"# wai benchmarks, {mode}; load average at start {load:.2f} on {os.cpu_count()} cores")
    if load > 0.5:
        print("# warning: the machine is busy; ratios involving llama.cpp will be noisy")
    failed = 0
    for name in selected:
        print(f"\n## {name}")
        started = time.perf_counter()
        saved = dict(os.environ)
        try:
            module = importlib.import_module(f"bench.{name}")
            problems = bad_figures(module.main())
            if problems:
                failed += 1
                print(f"FAILED: not a finite, positive ratio: {'; '.join(problems)}")
        except ModuleNotFoundError as exc:
            if exc.name not in OPTIONAL:
                failed += 1
                print(f"FAILED: {type(exc).__name__}: {exc}")
            else:
                print(f"skipped: {exc} (`make install` installs what the benchmarks need)")
        except Exception as exc:  # one broken bench must not hide the others' figures
            failed += 1
            print(f"FAILED: {type(exc).__name__}: {exc}")
        finally:  # a bench may point WAI_HOME at a scratch folder; the next one starts clean
            os.environ.clear()
            os.environ.update(saved)
        print(f"({time.perf_counter() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

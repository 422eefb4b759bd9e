"""A local conversation continued in a new process: time to first token with its saved llama.cpp
state, against reading its whole history from scratch, as a ratio in one run.

For each size of history (about 500 and 1,600 tokens), one conversation is started with `wai ask`
on the local backend (its state is saved after the turn); then, round by round and alternating
which goes first, `wai ask -c --no-log` continues it once with the state there and once with the
state deleted (read from scratch). Each side is a whole process, timed by the turn's own
`first_token_s` (--json: from the turn's start, the model's load included, to its first token).
The ratio is resumed / scratch (lower is better; the aim is at most 0.2 at 1,600 tokens). The
reply is 4 tokens: the prompt's reading is what is measured.

Model: the built-in SmolLM2-135M-Instruct Q8_0 where `wai setup` installed it, else a tiny
generated llama. WAI_BENCH_THREADS and WAI_BENCH_ROUNDS (default 5) tune it. Quick mode: tiny
model, about 60 and 120 tokens, two rounds.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.common import WAI, Figures, bench_rounds, bench_threads, builtin_pair, quick, sized, tiny_llamas


def _env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WAI_", "CLOUDFLARE_"))}
    env["WAI_HOME"] = str(home)
    return env


def _ask(args: list[str], env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run([WAI, "ask", "--json", *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wai ask failed ({done.returncode}): {done.stderr[-400:]}")
    document = json.loads(done.stdout)
    assert isinstance(document, dict)
    return document


def _history(model: Path, tokens: int, env: dict[str, str]) -> str:
    """A text of about `tokens` prompt tokens on this model, chat template included (counted by
    `wai tokens`: the template's own tokens once, then so many per unit of text)."""
    unit = "the grey sea "

    def count(units: int) -> int:
        command = [WAI, "tokens", "--json", "-m", str(model), unit * units]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        return int(json.loads(done.stdout)["tokens"])

    fifty, hundred = count(50), count(100)
    per_unit = (hundred - fifty) / 50
    overhead = fifty - 50 * per_unit
    return unit * max(1, round((tokens - overhead) / per_unit))


def main() -> Figures:
    threads = ["--threads", str(bench_threads())]
    rounds = bench_rounds(5)
    figures: Figures = {}
    with tempfile.TemporaryDirectory() as folder:
        pair = None if quick() else builtin_pair()
        if pair is not None:
            model = pair[0]
        else:
            model, _ = tiny_llamas(Path(folder), words=40, layers=sized(8, 2), context=4096)
        print(f"model {model.name}, {threads[1]} threads, {rounds} rounds")
        for size, label in zip(sized((500, 1600), (60, 120)), ("short", "long"), strict=True):
            home = Path(folder) / f"home-{size}"
            env = _env(home)
            history = _history(model, size, env)
            first = _ask(["-m", str(model), *threads, "--max-tokens", "4", history], env)
            usage = first["usage"]
            assert isinstance(usage, dict)
            states = home / "states"
            kept = Path(folder) / f"kept-{size}"
            if not any(states.glob("*/*.state")):
                raise RuntimeError("no state was saved after the first turn")
            shutil.copytree(states, kept)
            resumed: list[float] = []
            scratch: list[float] = []
            for round_ in range(rounds):
                for side in ("resumed", "scratch") if round_ % 2 == 0 else ("scratch", "resumed"):
                    shutil.rmtree(states, ignore_errors=True)
                    if side == "resumed":
                        shutil.copytree(kept, states)
                    done = _ask(["-c", "--no-log", *threads, "--max-tokens", "4", "and then?"], env)
                    timings = done["timings"]
                    assert isinstance(timings, dict)
                    (resumed if side == "resumed" else scratch).append(float(timings["first_token_s"]))
            ratio = statistics.median(r / s for r, s in zip(resumed, scratch, strict=True))
            print(
                f"  history {usage['prompt_tokens']} tokens: first token resumed "
                f"{statistics.median(resumed):.3f} s, from scratch {statistics.median(scratch):.3f} s, "
                f"ratio {ratio:.3f}"
            )
            figures[f"resumed / scratch TTFT, {label} history"] = ratio
    return figures

"""The OpenAI-compatible backend against a loopback server that speaks as vLLM does.

- time to first token with the exact count (POST /tokenize before the chat request, on the
  connection the chat request then reuses) against the same turn counted by estimate
  (`tokenizer = "none"`), in one process, as a ratio;
- a whole `wai ask -m eng:MODEL` (process start to exit) against a raw httpx script sending
  the same chat request and printing the same text, as a ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, WAI, Figures, sized

MODEL = "org/model-a"
RAW_SCRIPT = """
import json, sys, httpx
body = {"model": sys.argv[2], "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 64,
        "stream": True, "stream_options": {"include_usage": True}}
with httpx.Client() as client, client.stream("POST", sys.argv[1] + "/chat/completions", json=body) as reply:
    for line in reply.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                sys.stdout.write(choice.get("delta", {}).get("content") or "")
sys.stdout.write("\\n")
"""


def _home(folder: Path, base: str, tokenizer: str) -> Path:
    home = folder / tokenizer
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'[providers.eng]\ntype = "openai"\nbase_url = "{base}"\ntokenizer = "{tokenizer}"\n',
        encoding="utf-8",
    )
    (home / "models.toml").write_text(
        f'[models."eng:{MODEL}"]\ncontext_window = 4096\nmax_output = 512\n', encoding="utf-8"
    )
    return home


def _first_token(home: Path, turns: int, *, warm: bool) -> list[float]:
    """Seconds from the count to the first token of each of `turns` turns, in this process; `warm`:
    on a connection already open (else each turn opens its own)."""
    os.environ["WAI_HOME"] = str(home)
    from wai.backends.registry import Backends, LocalOptions, resolve_model
    from wai.catalog.entries import load_catalog
    from wai.conversation import Message, Timeouts
    from wai.events import Token
    from wai.sampling import Sampling
    from wai.settings import load_user_config
    from wai.tokens.budget import plan_request
    from wai.turn.planner import request_for

    config = load_user_config()
    spec = resolve_model(f"eng:{MODEL}", load_catalog(), config, None)
    times: list[float] = []
    backends = Backends(None, LocalOptions())
    try:
        for turn in range(turns + (1 if warm else 0)):
            if not warm:
                backends.close()
            started = time.perf_counter()
            counter = backends.counter(spec, "openai")
            # A new message each turn: a count is never answered from the conversation's cache.
            message = Message("user", f"question {turn}: " + "hello there " * 20)
            plan = plan_request(spec, (message,), counter, requested_max_tokens=64)
            request = request_for(spec, plan, sampling=Sampling(), timeouts=Timeouts())
            for event in backends.get("openai").stream(request):
                if isinstance(event, Token) and event.text:
                    times.append(time.perf_counter() - started)
                    break
            else:
                raise RuntimeError("no token came")
    finally:
        backends.close()
    return times[1:] if warm else times


def _process(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.startswith("token1"):
        raise RuntimeError(f"{command[:2]} failed: {done.stderr.strip()[-300:]}")
    return time.perf_counter() - started


def main() -> Figures:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.support.openai_server import base_url, openai_server

    rounds = sized(40, 3)
    runs = sized(15, 2)
    figures: Figures = {}
    with tempfile.TemporaryDirectory() as scratch, openai_server("vllm", models={MODEL: 4096}) as server:
        base = base_url(server)
        exact, estimate = _home(Path(scratch), base, "vllm"), _home(Path(scratch), base, "none")
        for warm in (False, True):
            with_count: list[float] = []
            without: list[float] = []
            for _ in range(rounds):  # alternating, so drift in the machine's speed hits both alike
                with_count += _first_token(exact, 1 if not warm else 3, warm=warm)
                without += _first_token(estimate, 1 if not warm else 3, warm=warm)
            state = "connection open" if warm else "new connection"
            name = f"TTFT with /tokenize / without, {state}"
            figures[name] = statistics.median(with_count) / statistics.median(without)
            print(
                f"time to first token, {state}: {statistics.median(with_count) * 1000:.2f} ms counted "
                f"by the server, {statistics.median(without) * 1000:.2f} ms estimated "
                f"({len(without)} turns each)"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WAI_", "OPENAI_", "CLOUDFLARE_"))}
        env["WAI_HOME"] = str(exact)
        script = Path(scratch) / "raw.py"
        script.write_text(RAW_SCRIPT, encoding="utf-8")
        wai_times: list[float] = []
        raw_times: list[float] = []
        for _ in range(runs):
            wai_times.append(_process([WAI, "ask", "--no-log", "-m", f"eng:{MODEL}", "hello there"], env))
            raw_times.append(_process([sys.executable, str(script), base, MODEL], env))
        figures["wai ask / raw httpx script"] = statistics.median(wai_times) / statistics.median(raw_times)
        print(
            f"whole process: wai ask {statistics.median(wai_times) * 1000:.0f} ms, raw httpx script "
            f"{statistics.median(raw_times) * 1000:.0f} ms ({runs} runs each)"
        )
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")
    return figures


if __name__ == "__main__":
    main()

"""`wai serve` under concurrent clients: 4 clients, each sending 8 streaming chat completions one
after another (`POST /v1/chat/completions`, greedy, 64 tokens each), against llama.cpp's own
`llama-server`, and `wai serve --parallel 4` against `--parallel 1`.

Both servers run the same model (the built-in SmolLM2-135M-Instruct Q8_0; in quick mode, or
without `wai setup`, a tiny generated one), with the same threads and the same context per slot
(llama-server's `-c` is the context of all its slots together: 4 slots of SLOT tokens are
`-c 4*SLOT`; `wai serve --slot-context SLOT`), one after the other on an otherwise idle machine.
Each request has a prompt of its own, the same on both sides. A client times each request's first
token (the first chunk holding text) and counts its tokens (the usage chunk). The figures: the
aggregate tokens per second of all the requests over the wall time of the run (aim: at least 0.95x
llama-server's), and the 95th percentile of the time to first token (aim: at most 1.2x).

`llama-server` is built once from the llama.cpp inside the pinned llama-cpp-python source
distribution (see bench/llama_tools.py); where it cannot be, that comparison is skipped with a
note saying why. Each server runs WAI_BENCH_ROUNDS times (default 2), in turn, the order reversed
each round, so that a machine growing busier or quieter weighs on them alike; the figures pool
the rounds. WAI_BENCH_THREADS tunes the threads.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from bench.common import WAI, Figures, bench_rounds, bench_threads, q8_model, sized
from bench.llama_tools import ToolsUnavailable, llama_tools

CLIENTS = 4
TOKEN = "serve-bench-token-5d0b1f"
PROMPT = "Request {n}: write a long story about {topic}, in many paragraphs."
TOPICS = ("a lighthouse keeper", "a robot who paints", "two rival bakers", "a train that never stops")
READY_TIMEOUT = 180.0


@dataclass(frozen=True)
class Reply:
    first_token_s: float
    tokens: int


@dataclass(frozen=True)
class Run:
    """One server's run: every reply, and the wall time from the first request to the last token."""

    replies: list[Reply]
    seconds: float

    @staticmethod
    def joined(runs: Sequence[Run]) -> Run:
        """Several rounds as one run: every reply, and their wall times added."""
        return Run([reply for run in runs for reply in run.replies], sum(run.seconds for run in runs))

    @property
    def tokens_per_s(self) -> float:
        return sum(reply.tokens for reply in self.replies) / self.seconds

    @property
    def p95_first_token_s(self) -> float:
        return percentile([reply.first_token_s for reply in self.replies], 95)


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value at or above `pct` percent of them."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _last_lines(log: Path, count: int = 3) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    return " | ".join([line for line in lines if line][-count:])


@contextmanager
def serving(
    name: str, command: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """Runs a server (in a session of its own, so that it and anything it starts are stopped
    together) on the port after `--port` until it answers `GET /v1/models`; yields its origin and
    the model id it serves. Stopped on exit."""
    origin = f"http://127.0.0.1:{command[command.index('--port') + 1]}"
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        model = _wait_ready(name, origin, process, log)
        try:
            yield origin, model
        except Exception as exc:  # what the server said about it is in its log
            raise RuntimeError(
                f"{name}: {type(exc).__name__}: {exc}; its log ends: {_last_lines(log)}"
            ) from exc
    finally:
        _stop(process)


def _wait_ready(name: str, origin: str, process: subprocess.Popen[bytes], log: Path) -> str:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT
    headers = {"Authorization": f"Bearer {TOKEN}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited ({process.returncode}) before serving: {_last_lines(log)}")
        try:
            reply = httpx.get(f"{origin}/v1/models", headers=headers, timeout=5)
            if reply.status_code == 200:
                model: str = reply.json()["data"][0]["id"]
                return model
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} did not answer within {READY_TIMEOUT:.0f} s: {_last_lines(log)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's whole session, then SIGKILL after 20 s: nothing is left running."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with suppress(ProcessLookupError):  # a child that outlived the server itself
        os.killpg(process.pid, signal.SIGKILL)


async def _request(client: object, origin: str, model: str, prompt: str, max_tokens: int) -> Reply:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    pieces = 0
    usage: int | None = None
    async with client.stream("POST", f"{origin}/v1/chat/completions", json=body) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"{origin} answered {reply.status_code}: {(await reply.aread())[:300]!r}")
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"].get("completion_tokens")
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    pieces += 1
                    if first is None:
                        first = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"{origin} streamed no text for {prompt!r}")
    return Reply(first, usage if usage is not None else pieces)


async def _clients(origin: str, model: str, prompts: list[list[str]], max_tokens: int) -> Run:
    import httpx

    async def one_client(client: httpx.AsyncClient, own: list[str]) -> list[Reply]:
        return [await _request(client, origin, model, prompt, max_tokens) for prompt in own]

    # A connection of its own for each request: llama-server may close one after a stream while
    # the client pool still holds it, and the next request on it would find it gone.
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=600) as client:
        await _request(client, origin, model, "Say hello.", 4)  # loads the model, warms its caches
        started = time.perf_counter()
        replies = await asyncio.gather(*(one_client(client, own) for own in prompts))
        seconds = time.perf_counter() - started
    return Run([reply for own in replies for reply in own], seconds)


LLAMA_SERVER = f"llama-server --parallel {CLIENTS}"
OURS = f"wai serve --parallel {CLIENTS}"
ALONE = "wai serve --parallel 1"


def main() -> Figures:
    requests, max_tokens, slot = sized(8, 2), sized(64, 8), sized(1024, 256)
    threads, rounds = bench_threads(), bench_rounds(2)
    prompts = [
        [PROMPT.format(n=c * requests + r, topic=TOPICS[(c + r) % len(TOPICS)]) for r in range(requests)]
        for c in range(CLIENTS)
    ]
    with tempfile.TemporaryDirectory(prefix="wai-bench-serve-") as scratch_name:
        scratch = Path(scratch_name)
        path = q8_model(scratch)
        print(
            f"{CLIENTS} clients x {requests} requests x {max_tokens} tokens, streaming; {threads} threads, "
            f"{slot} tokens of context a slot; {rounds} rounds, the servers in turn, in another order each"
        )
        home = scratch / "home"
        home.mkdir()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("WAI_", "CLOUDFLARE_"))}
        env.update(WAI_HOME=str(home), WAI_SERVE_TOKEN=TOKEN)

        def wai_serve(slots: int) -> list[str]:
            return [
                WAI, "serve", "-m", str(path), "--port", str(_free_port()), "--threads", str(threads),
                "--parallel", str(slots), "--slot-context", str(slot),
            ]  # fmt: skip

        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        try:
            server = llama_tools().server
        except ToolsUnavailable as exc:
            print(f"llama-server: skipped ({exc})")
        else:
            llama_server = [
                str(server), "-m", str(path), "--host", "127.0.0.1", "--port", str(_free_port()),
                "-t", str(threads), "-tb", str(threads),
                "-c", str(CLIENTS * slot), "--parallel", str(CLIENTS),
            ]  # fmt: skip
            commands[LLAMA_SERVER] = (llama_server, None)
        commands[OURS] = (wai_serve(CLIENTS), env)
        commands[ALONE] = (wai_serve(1), env)

        runs: dict[str, list[Run]] = {name: [] for name in commands}
        for round_ in range(rounds):
            order = list(commands) if round_ % 2 == 0 else list(reversed(commands))
            for name in order:
                command, server_env = commands[name]
                log = scratch / f"{name.replace(' ', '_')}.log"
                with serving(name, command, log, server_env) as (origin, model):
                    runs[name].append(asyncio.run(_clients(origin, model, prompts, max_tokens)))
    return _report({name: Run.joined(each) for name, each in runs.items()})


def _report(runs: dict[str, Run]) -> Figures:
    for name, run in runs.items():
        tokens = sum(reply.tokens for reply in run.replies)
        print(
            f"  {name:<26} {tokens} tokens in {run.seconds:6.2f} s: {run.tokens_per_s:6.1f} tokens/s, "
            f"first token p50 {percentile([r.first_token_s for r in run.replies], 50):.2f} s, "
            f"p95 {run.p95_first_token_s:.2f} s"
        )
    counts = {name: sorted(reply.tokens for reply in run.replies) for name, run in runs.items()}
    if len({tuple(tokens) for tokens in counts.values()}) > 1:
        print("  note: the servers generated different token counts (a reply ended early)")
    figures: Figures = {}
    pairs = ((LLAMA_SERVER, "wai serve / llama-server"), (ALONE, f"wai serve --parallel {CLIENTS} / 1"))
    for baseline, label in pairs:
        if baseline in runs:
            mine, other = runs[OURS], runs[baseline]
            figures[f"{label} tokens/s"] = speed = mine.tokens_per_s / other.tokens_per_s
            figures[f"{label} p95 TTFT"] = first = mine.p95_first_token_s / other.p95_first_token_s
            print(f"  {label}: aggregate tokens/s {speed:.2f}x, p95 time to first token {first:.2f}x")
    if LLAMA_SERVER in runs:
        print("  (aim: tokens/s at least 0.95x llama-server's, p95 time to first token at most 1.2x)")
    return figures


if __name__ == "__main__":
    main()

"""`wai batch` against a loopback Workers AI server that answers each request after 50 ms:

- 200 records through `wai batch -j 16` (process start to exit) against an asyncio httpx script
  that sends the same 200 requests, 16 at a time, and prints the same lines (aim: at most 1.2x);
- a shell loop of one `wai ask` per record against `wai batch -j 16` (aim: at least 10x faster).
  The loop is timed on fewer records (LOOP_RECORDS) and scaled to the 200, as it runs one record
  after another and each takes the same: the ratio says so in its name.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import LOOPBACK_MODEL, REPO, WAI, Figures, loopback_env, sized

LATENCY = 0.05
JOBS = 16
RAW_SCRIPT = """
import asyncio, json, sys, httpx
base, model, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
prompts = [line.rstrip("\\n") for line in sys.stdin if line.strip()]

async def one(client, gate, index, prompt):
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 64, "stream": True}
    url = f"{base}/accounts/bench/ai/run/{model}"
    pieces = []
    headers = {"Authorization": "Bearer bench"}
    async with gate, client.stream("POST", url, json=body, headers=headers) as reply:
        async for line in reply.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                pieces.append(json.loads(line[6:]).get("response") or "")
    return {"index": index, "text": "".join(pieces)}

async def main():
    gate = asyncio.Semaphore(jobs)
    limits = httpx.Limits(max_connections=jobs, max_keepalive_connections=jobs)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        lines = await asyncio.gather(*(one(client, gate, i, p) for i, p in enumerate(prompts)))
    for line in lines:
        sys.stdout.write(json.dumps(line) + "\\n")

asyncio.run(main())
"""


def _timed(command: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, env=env, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    return seconds, done.stdout


def main() -> Figures:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.support.workers_ai_server import Simulation, WorkersAIServer

    records = sized(200, 24)
    loop_records = sized(20, 3)
    prompts = [f"classify ticket {i}: the printer on floor {i % 7} is out of paper" for i in range(records)]
    stdin = "".join(f"{prompt}\n" for prompt in prompts).encode()
    with tempfile.TemporaryDirectory() as folder, WorkersAIServer(Simulation(latency=LATENCY)) as server:
        env = loopback_env(Path(folder) / "home", server.base_url)
        batch_s, out = _timed(
            [WAI, "batch", "-m", LOOPBACK_MODEL, "-j", str(JOBS), "--max-tokens", "64"], stdin, env
        )
        answered = [line for line in out.splitlines() if b'"error": null' in line]
        if len(answered) != records:
            raise RuntimeError(f"wai batch answered {len(answered)} of {records} records")
        raw_s, raw_out = _timed(
            [sys.executable, "-c", RAW_SCRIPT, server.base_url, LOOPBACK_MODEL, str(JOBS)], stdin, env
        )
        if len(raw_out.splitlines()) != records:
            raise RuntimeError("the httpx script did not answer every record")
        ask = f'"{WAI}" ask -m {LOOPBACK_MODEL} --max-tokens 64 --no-log --no-stdin'
        loop = f'while IFS= read -r line; do {ask} "$line"; done'
        sample = b"".join(f"{prompt}\n".encode() for prompt in prompts[:loop_records])
        loop_s, loop_out = _timed(["sh", "-c", loop], sample, env)
        if len(loop_out.splitlines()) != loop_records:
            raise RuntimeError("the shell loop of wai ask did not answer every record")
    loop_scaled = loop_s * records / loop_records
    print(f"{records} records, {LATENCY * 1000:.0f} ms a reply, {JOBS} at once")
    print(f"  wai batch -j {JOBS}          {batch_s:7.2f} s  ({records / batch_s:.1f} records/s)")
    print(f"  asyncio httpx script     {raw_s:7.2f} s  ({records / raw_s:.1f} records/s)")
    print(
        f"  shell loop of wai ask    {loop_scaled:7.2f} s  (timed on {loop_records} records: "
        f"{loop_s:.2f} s, scaled to {records})"
    )
    print(f"  wai batch / httpx script: {batch_s / raw_s:.2f}x (aim at most 1.2x)")
    print(f"  shell loop / wai batch:   {loop_scaled / batch_s:.1f}x (aim at least 10x)")
    return {
        "wai batch -j 16 / asyncio httpx": batch_s / raw_s,
        "shell loop of wai ask (scaled) / wai batch -j 16": loop_scaled / batch_s,
    }

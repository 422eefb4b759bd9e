"""Many streams at once from another process: each accepted one whole and its own, each refusal a 3040."""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.serve_process import Served, ServeProcess, write_catalog
from tests.support.tiny_gguf import SPLIT_SCRIPT, TinyModel

MAX_QUEUE = 2
STREAMS = 12  # at once, over two models: at least 4 x --max-queue
ROUNDS = 3
TIME_BUDGET = 60.0  # seconds; the rounds stop early past it
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"


def expected_loop_text(model: TinyModel, tokens: int) -> str:
    """What the loop model writes in `tokens` tokens: its pieces over and over, a cut character dropped."""
    pieces = model.reply_bytes
    data = b"".join(pieces[i % len(pieces)] for i in range(tokens))
    return data.decode("utf-8", errors="ignore")


@dataclass
class Result:
    model: str
    max_tokens: int
    status: int = 0
    text: str = ""
    events: list[dict[str, object]] = field(default_factory=list)
    done: bool = False
    first_token: float | None = None
    error: str | None = None
    body: object = None


def one_stream(server: ServeProcess, model: str, max_tokens: int, start: threading.Event) -> Result:
    result = Result(model, max_tokens)
    body = {"prompt": "hi", "stream": True, "max_tokens": max_tokens, "temperature": 0}
    start.wait()
    began = time.perf_counter()
    try:
        with httpx.stream(
            "POST", server.run_url(model), json=body, headers=server.headers, timeout=120
        ) as reply:
            result.status = reply.status_code
            if reply.status_code != 200:
                result.body = json.loads(reply.read())
                return result
            for line in reply.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    result.done = True
                    continue
                event = json.loads(data)
                result.events.append(event)
                piece = event.get("response")
                if isinstance(piece, str) and piece:
                    result.first_token = result.first_token or time.perf_counter() - began
                    result.text += piece
    except (httpx.HTTPError, ValueError) as exc:
        result.error = repr(exc)
    return result


def _go() -> threading.Event:
    go = threading.Event()
    go.set()
    return go


def one_round(server: ServeProcess, round_: int) -> list[Result]:
    """STREAMS streams let go at the same moment; every loop stream asks for a length of its own,
    so a piece of one stream inside another would show."""
    start = threading.Event()
    batch: list[Result] = []

    def run(model: str, tokens: int) -> None:
        batch.append(one_stream(server, model, tokens, start))

    threads = []
    for i in range(STREAMS):
        model, tokens = ("@cf/test/tiny", 60) if i % 2 else ("@cf/test/loop", 150 + 7 * i + round_)
        threads.append(threading.Thread(target=run, args=(model, tokens)))
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join(180)
    return batch


def test_concurrent_streams_complete_exactly_or_are_refused_with_3040(
    isolated_home: Path, tiny_models: dict[str, TinyModel], looping: TinyModel
) -> None:
    served = [
        Served("@cf/test/tiny", tiny_models["q8_0"]),
        Served("@cf/test/loop", looping, context_window=2000, max_output=30000, total_context=32768),
    ]
    write_catalog(isolated_home, served)
    results: list[Result] = []
    started = time.monotonic()
    with ServeProcess(isolated_home, "--max-queue", str(MAX_QUEUE)) as server:
        # The baseline: one stream at a time, each model loaded already.
        alone = [one_stream(server, model, 60, _go()) for model in ("@cf/test/tiny", "@cf/test/loop") * 3]
        for round_ in range(ROUNDS):
            if time.monotonic() - started > TIME_BUDGET:
                break
            batch = one_round(server, round_)
            results += batch
        figures = server.metrics()

    accepted = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status != 200]
    for r in results:
        assert r.error is None, r.error
    for r in accepted:
        want = SPLIT_SCRIPT if r.model == "@cf/test/tiny" else expected_loop_text(looping, r.max_tokens)
        assert r.text == want, (r.model, r.max_tokens)
        assert r.done, "an accepted stream ended without [DONE]"
        assert "usage" in r.events[-1]
    for r in refused:
        assert r.status == 429, r.body
        assert r.body == {
            "result": None,
            "success": False,
            "errors": [r.body["errors"][0]],  # type: ignore[index]
            "messages": [],
        }
        assert r.body["errors"][0]["code"] == 3040  # type: ignore[index]
    for model in ("@cf/test/tiny", "@cf/test/loop"):
        assert any(r.model == model for r in accepted), f"no stream on {model} was accepted"
        assert figures[model]["refused"] == sum(r.model == model for r in refused)

    firsts = sorted(r.first_token for r in accepted if r.first_token is not None)
    baseline = statistics.median(r.first_token for r in alone[2:] if r.first_token is not None)
    assert all(r.text for r in alone)
    report = {
        "streams": len(results),
        "accepted": len(accepted),
        "refused_3040": len(refused),
        "max_queue": MAX_QUEUE,
        "ttft_p50_s": round(statistics.median(firsts), 4),
        "ttft_p95_s": round(firsts[min(len(firsts) - 1, int(0.95 * len(firsts)))], 4),
        "ttft_alone_p50_s": round(baseline, 4),
    }
    report["p50_over_alone"] = round(report["ttft_p50_s"] / baseline, 1)
    report["p95_over_alone"] = round(report["ttft_p95_s"] / baseline, 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "serve-load.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwai serve load: {report}")

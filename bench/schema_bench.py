"""What holding a reply to a schema costs on llama.cpp: the grammar sampler against none.

The same backend (the product's turn driver over `LlamaCpp.stream`) runs the same model, threads
and context twice a round, once with `--schema`'s grammar and once without, alternating which
goes first (A B, then B A, ...) so drift in the machine's load falls on both alike; each figure is
the median of the per-round ratios (grammar / none):

- decode tokens per second (tokens after the first over the time after the first, the footer's
  definition): what llama.cpp's grammar sampler costs each token, over SmolLM2's 49,152-token
  vocabulary. The schema is one long bounded string, so the reply runs on as long as the other;
- time to first token: the prompt's decoding plus the first sample, the grammar's included.

Every turn gets a prompt of its own (a round number first), so neither side reuses the other's
cached prompt. Model: the built-in SmolLM2-135M-Instruct Q8_0 (`wai setup`); without it, or in
quick mode, a tiny generated model. WAI_BENCH_THREADS and WAI_BENCH_ROUNDS tune it.
"""

from __future__ import annotations

import io
import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, Figures, bench_rounds, bench_threads, q8_model, sized

SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"story": {"type": "string", "minLength": 600, "maxLength": 1000}},
        "required": ["story"],
    }
)
PROMPT = (
    "Request {n}. Reply in JSON with one key, story. Write a long, detailed story about {topic}, "
    "in many paragraphs. Some context you may use:\n\n{prose}"
)
TOPICS = ("a lighthouse keeper", "a robot who paints", "two rival bakers", "a train that never stops")


@dataclass(frozen=True, slots=True)
class Run:
    first_token: float
    tokens_per_s: float
    tokens: int


class Side:
    """One backend with the model loaded, run with the grammar or without."""

    def __init__(self, path: Path, threads: int, generated: int) -> None:
        from wai.backends.base import BackendSettings, LocalOptions
        from wai.backends.llama_cpp.backend import LlamaCpp
        from wai.backends.llama_cpp.stream import spec_for_gguf
        from wai.catalog.entries import load_catalog
        from wai.schema import load_schema

        self.backend = LlamaCpp("local", BackendSettings(local=LocalOptions(threads=threads)))
        self.spec = spec_for_gguf(path, load_catalog())
        self.generated = generated
        self.schema = load_schema(SCHEMA)

    def run(self, prompt: str, *, grammar: bool) -> Run:
        from wai.backends.request import Request
        from wai.conversation import Message
        from wai.render.plain import PlainSink
        from wai.sampling import Sampling
        from wai.turn.stream import stream_turn, turn_info

        request = Request(
            model=self.spec,
            messages=(Message("user", prompt),),
            max_tokens=self.generated,
            sampling=Sampling(temperature=0),
            schema=self.schema if grammar else None,
        )
        info = turn_info(self.backend, request)
        result = stream_turn(self.backend, request, PlainSink(io.StringIO()), info)
        first, tokens = result.timings.first_token, result.completion_tokens
        assert first is not None and tokens is not None and tokens > 1, result.error
        generating = result.timings.total - first
        return Run(first, (tokens - 1) / generating if generating > 0 else float("nan"), tokens)

    def close(self) -> None:
        self.backend.close()


def main() -> Figures:
    rounds, threads = bench_rounds(5), bench_threads()
    generated = sized(128, 8)
    prose = (REPO / "README.md").read_text(encoding="utf-8")[: sized(1200, 200)]
    with tempfile.TemporaryDirectory(prefix="wai-bench-schema-") as scratch:
        path = q8_model(Path(scratch))
        side = Side(path, threads, generated)
        try:
            side.run(PROMPT.format(n=0, topic=TOPICS[0], prose=prose), grammar=True)  # load, size the context
            decode: list[float] = []
            ttft: list[float] = []
            turn = 1
            for round_ in range(rounds):
                runs: dict[bool, Run] = {}
                for grammar in (True, False) if round_ % 2 == 0 else (False, True):
                    prompt = PROMPT.format(n=turn, topic=TOPICS[round_ % len(TOPICS)], prose=prose)
                    runs[grammar] = side.run(prompt, grammar=grammar)
                    turn += 1
                held, free = runs[True], runs[False]
                print(
                    f"round {round_ + 1}: grammar {held.tokens} tokens {held.tokens_per_s:.1f} tok/s "
                    f"TTFT {held.first_token * 1000:.0f} ms; none {free.tokens} tokens "
                    f"{free.tokens_per_s:.1f} tok/s TTFT {free.first_token * 1000:.0f} ms"
                )
                decode.append(held.tokens_per_s / free.tokens_per_s)
                ttft.append(held.first_token / free.first_token)
        finally:
            side.close()
    figures = {
        "grammar / none decode tokens/s": statistics.median(decode),
        "grammar / none TTFT": statistics.median(ttft),
    }
    for name, value in figures.items():
        print(f"{name}: {value:.2f}")
    return figures


if __name__ == "__main__":
    main()

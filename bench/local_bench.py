"""The local backend's speed against a plain llama-cpp-python loop on the same GGUF file.

Two comparisons, each alternating ours and the baseline round by round (A B, then B A, ...) so
that drift in the machine's load falls on both sides alike, and each reported as the median of
the per-round ratios:

- model loaded (what every turn of a REPL costs, and what the 0.97 goal is about): the product's
  turn driver (`stream_turn` over `LlamaCpp.stream` into the plain-text sink) against
  `Llama.generate` with greedy sampling and a per-token UTF-8 decode into a string. The baseline
  gets the prompt's token ids ready made (the same ids our chat template makes), which favours
  it by a tokenization of a few dozen tokens.
- the whole command: `wai ask --backend local` as a subprocess in a pipe, against `python -c` of
  the same loop, both timed from the spawn to the first byte on stdout (start-up and the model's
  load included on both sides) and from the first to the last byte (generation).

Both sides run greedy, the same number of threads (for generation and for the prompt), the same
context size (the one our backend chose), the same batch size, GPU layers and flash attention
setting (llama.cpp's `auto` as our backend resolved it), and produce 128 tokens from the
same prompt; the prompts are chosen so SmolLM2 does not stop early, and each run's token count
is checked. Tokens per second counts the tokens after the first over the time after the first
(the `wai` footer's definition).

Models: the built-in SmolLM2-135M-Instruct Q8_0 (derived) and Q4_1 files from the models folder
(`wai setup` installs them); without them, a larger tiny model built like the tests' ones. Then
Q8_0 against F16 tokens per second on the same model, both through our backend.

WAI_BENCH_THREADS (default: half the cores) and WAI_BENCH_ROUNDS (default 5) tune it. Quick mode:
8 tokens, two rounds, on a small tiny model.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.common import WAI, Figures, bench_rounds, bench_threads, builtin_pair, quick, tiny_llamas

BUSY_LOAD = 0.5
# One topic per round (both sides get the same one), so neither side answers from a cached prompt.
TOPICS = (
    "a lighthouse keeper who finds a map",
    "a robot learning to paint",
    "two rival bakers in a small town",
    "a sailor lost in a storm",
    "a girl who can talk to birds",
    "a city built on the back of a whale",
    "an old clockmaker and his apprentice",
    "a dragon who is afraid of fire",
    "a train that never stops",
    "a library that moves at night",
)
PROMPT = "Write a long, detailed story about {topic}. Use many paragraphs."


@dataclass(frozen=True, slots=True)
class Sizes:
    generated: int  # tokens each reply is held to
    rounds: int  # alternating rounds with the model loaded
    command_rounds: int  # alternating rounds of whole commands
    threads: int


def sizes() -> Sizes:
    rounds = bench_rounds(5)
    generated = 8 if quick() else 128
    command_rounds = 1 if quick() else max(2, rounds - 2)
    return Sizes(generated=generated, rounds=rounds, command_rounds=command_rounds, threads=bench_threads())


@dataclass(frozen=True, slots=True)
class Run:
    first_token: float  # seconds from the start to the first text
    tokens_per_s: float
    tokens: int
    text: str


@dataclass(frozen=True, slots=True)
class Settings:
    """What both sides share; read from our backend after its first turn."""

    threads: int
    n_ctx: int
    n_batch: int
    gpu_layers: int
    flash_attn: bool


def prompt_for(round_: int) -> str:
    return PROMPT.format(topic=TOPICS[round_ % len(TOPICS)])


# Longer than any round's prompt in any vocabulary: the warm-up sizes both contexts with it.
LONGEST = PROMPT.format(topic=", ".join(TOPICS))


def rate(tokens: int, first: float, total: float) -> float:
    return (tokens - 1) / (total - first) if tokens > 1 and total > first else float("nan")


# Ours: the product's turn driver over the local backend, into the plain-text sink.


def flash_attention_resolved(path: Path, threads: int) -> bool:
    """Whether llama.cpp's `auto` turned flash attention on for our context, from `wai ask --debug`.

    Our backend leaves it at llama.cpp's default (`auto`) while Llama() turns it off unless asked,
    so the baseline is given what `auto` chose on this machine.
    """
    command = [WAI, "ask", "--backend", "local", "-m", str(path), "--max-tokens", "1", "--debug"]
    command += ["--threads", str(threads), "hi"]
    with tempfile.TemporaryDirectory(prefix="wai-bench-home-") as home:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,  # a prompt given: nothing to read, whatever this process's stdin is
            capture_output=True,
            text=True,
            env={**os.environ, "WAI_HOME": home},
            check=False,
        )
    if "Flash Attention enabled" in done.stderr:
        return True
    if "Flash Attention disabled" in done.stderr or "flash_attn            = disabled" in done.stderr:
        return False
    raise RuntimeError(f"cannot tell how llama.cpp set flash attention: {done.stderr.strip()[-300:]}")


class Ours:
    def __init__(self, path: Path, size: Sizes) -> None:
        from wai.backends.base import BackendSettings, LocalOptions
        from wai.backends.llama_cpp.backend import LlamaCpp
        from wai.backends.llama_cpp.stream import spec_for_gguf
        from wai.catalog.entries import load_catalog

        self.size = size
        self.backend = LlamaCpp("local", BackendSettings(local=LocalOptions(threads=size.threads)))
        self.spec = spec_for_gguf(path, load_catalog())

    def run(self, prompt: str) -> Run:
        from wai.backends.request import Request
        from wai.conversation import Message
        from wai.render.plain import PlainSink
        from wai.sampling import Sampling
        from wai.turn.stream import stream_turn, turn_info

        request = Request(
            model=self.spec,
            messages=(Message("user", prompt),),
            max_tokens=self.size.generated,
            sampling=Sampling(temperature=0),
        )
        result = stream_turn(
            self.backend, request, PlainSink(io.StringIO()), turn_info(self.backend, request)
        )
        first = result.timings.first_token
        assert first is not None and result.completion_tokens is not None
        return Run(
            first_token=first,
            tokens_per_s=rate(result.completion_tokens, first, result.timings.total),
            tokens=result.completion_tokens,
            text=result.text,
        )

    def n_ctx(self) -> int:
        n_ctx = self.backend.describe()["n_ctx"]
        assert isinstance(n_ctx, int)
        return n_ctx

    def settings(self, path: Path) -> Settings:
        n_ctx = self.n_ctx()
        return Settings(
            threads=self.size.threads,
            n_ctx=n_ctx,
            n_batch=min(512, n_ctx),
            gpu_layers=self.backend.gpu_layers(),
            flash_attn=flash_attention_resolved(path, self.size.threads),
        )

    def warm_up(self) -> Run:
        """The first turn: it loads the model and sizes the context for the longest prompt, so no
        timed turn pays for growing it (and the baseline's context, made the same size, fits all)."""
        return self.run(LONGEST)

    def close(self) -> None:
        self.backend.close()


# The baseline: llama-cpp-python's Llama class and its generate loop.


def baseline_loop(
    llm: Any, llama_cpp: Any, prompt_ids: list[int], limit: int, write: Callable[[str], object]
) -> tuple[float | None, int, str, float]:
    """The plain loop: greedy `generate`, each token decoded to text and written out.

    Returns the seconds to the first text, the tokens produced, the text and the total seconds.
    Its source also runs in the subprocess baseline, so it imports what it needs itself.
    """
    import codecs
    import time

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    started = time.perf_counter()
    first = None
    produced = 0
    pieces = []
    for token in llm.generate(prompt_ids, temp=0.0, top_k=1, reset=True):
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            break
        produced += 1
        text = decoder.decode(llm.detokenize([token]))
        if text:
            if first is None:
                first = time.perf_counter() - started
            pieces.append(text)
            write(text)
        if produced >= limit:
            break
    return first, produced, "".join(pieces), time.perf_counter() - started


def llama_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "n_ctx": settings.n_ctx,
        "n_batch": settings.n_batch,
        "n_ubatch": settings.n_batch,
        "n_threads": settings.threads,
        "n_threads_batch": settings.threads,
        "n_gpu_layers": settings.gpu_layers,
        "flash_attn": settings.flash_attn,
        "verbose": False,
    }


class Baseline:
    def __init__(self, path: Path, settings: Settings, generated: int) -> None:
        import llama_cpp

        self.generated = generated
        self.llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), **llama_kwargs(settings))

    def prompt_ids(self, prompt: str) -> list[int]:
        from wai.conversation import Message
        from wai.llama.native import NativeModel
        from wai.tokens.local_template import tokenize_chat

        return tokenize_chat(NativeModel.borrow(self.llm), (Message("user", prompt),))

    def run(self, prompt: str) -> Run:
        ids = self.prompt_ids(prompt)
        sink = io.StringIO()
        first, produced, text, total = baseline_loop(
            self.llm, self.llama_cpp, ids, self.generated, sink.write
        )
        assert first is not None
        return Run(first_token=first, tokens_per_s=rate(produced, first, total), tokens=produced, text=text)

    def close(self) -> None:
        self.llm.close()


# Alternation and figures


def alternate(a: Callable[[int], Run], b: Callable[[int], Run], rounds: int) -> tuple[list[Run], list[Run]]:
    """A then B in even rounds, B then A in odd ones; round i gives both sides the same prompt."""
    ours: list[Run] = []
    theirs: list[Run] = []
    for round_ in range(rounds):
        if round_ % 2 == 0:
            ours.append(a(round_))
            theirs.append(b(round_))
        else:
            theirs.append(b(round_))
            ours.append(a(round_))
    return ours, theirs


def median_ratio(ours: list[Run], theirs: list[Run], field: str) -> float:
    return float(
        statistics.median(getattr(x, field) / getattr(y, field) for x, y in zip(ours, theirs, strict=True))
    )


def check_counts(label: str, generated: int, *sides: list[Run]) -> None:
    counts = sorted({run.tokens for side in sides for run in side})
    if counts != [generated]:
        print(f"  note: {label}: replies of {counts} tokens (asked for {generated}); rates use each count")


def print_pair(label: str, generated: int, ours: list[Run], theirs: list[Run]) -> Figures:
    """Print the pair's ratios (ours / baseline); returns them."""
    tps = median_ratio(ours, theirs, "tokens_per_s")
    ttft = median_ratio(ours, theirs, "first_token")
    goal = "meets" if tps >= 0.97 else "BELOW"
    print(
        f"  {label:<28} tokens/s ratio {tps:.3f} ({goal} the 0.97 goal)   "
        f"ours {statistics.median(r.tokens_per_s for r in ours):.1f} / "
        f"baseline {statistics.median(r.tokens_per_s for r in theirs):.1f} tokens/s"
    )
    print(
        f"  {'':<28} TTFT ratio     {ttft:.3f} (lower is better)   "
        f"ours {statistics.median(r.first_token for r in ours) * 1e3:.1f} / "
        f"baseline {statistics.median(r.first_token for r in theirs) * 1e3:.1f} ms"
    )
    check_counts(label, generated, ours, theirs)
    if ours[0].text.strip() != theirs[0].text.strip():
        print(f"  note: {label}: the two sides wrote different text (greedy on the same model should agree)")
    return {f"{label} tokens/s": tps, f"{label} TTFT": ttft}


def loaded_comparison(path: Path, size: Sizes) -> tuple[Settings, Figures]:
    ours = Ours(path, size)
    try:
        ours.warm_up()
        settings = ours.settings(path)
        baseline = Baseline(path, settings, size.generated)
        try:
            baseline.run(LONGEST)  # its first turn too, off the clock
            a, b = alternate(
                lambda i: ours.run(prompt_for(i)), lambda i: baseline.run(prompt_for(i)), size.rounds
            )
            if ours.n_ctx() != settings.n_ctx:
                print(f"  note: our context grew during the rounds (from {settings.n_ctx} tokens)")
        finally:
            baseline.close()
    finally:
        ours.close()
    figures = print_pair(f"loaded {label_of(path)}", size.generated, a, b)
    return settings, figures


# The whole command, as subprocesses in a pipe

BASELINE_MAIN = """
import json
import sys

import llama_cpp

args = json.loads(sys.argv[1])
llm = llama_cpp.Llama(model_path=args["path"], **args["kwargs"])


def flushed(text):
    sys.stdout.write(text)
    sys.stdout.flush()


_, produced, _, _ = baseline_loop(llm, llama_cpp, args["ids"], args["limit"], flushed)
flushed("\\n")
sys.stderr.write(f"{produced}\\n")
"""


def baseline_script() -> str:
    """A plain script: load the model with Llama, then the same loop, its text flushed per token."""
    import inspect

    return "from typing import Any, Callable\n" + inspect.getsource(baseline_loop) + BASELINE_MAIN


def time_stdout(command: list[str], env: dict[str, str]) -> tuple[float, float, str, str]:
    """Spawn `command`; seconds to its first byte on stdout and to its last; stdout, stderr.

    When the whole reply comes in one read (a tiny model's few tokens), the last byte's time is
    taken at the command's exit instead: the generation was too quick to see from outside.
    """
    started = time.perf_counter()
    with subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        first = last = None
        chunks = []
        fd = child.stdout.fileno()
        while chunk := os.read(fd, 65536):
            now = time.perf_counter() - started
            first = now if first is None else first
            last = now
            chunks.append(chunk)
        err = child.stderr.read().decode("utf-8", errors="replace")
        code = child.wait()
    ended = time.perf_counter() - started
    if code != 0 or first is None or last is None:
        raise RuntimeError(f"{command[0]} exited {code}: {err.strip()[-300:]}")
    last = last if last > first else ended
    return first, last, b"".join(chunks).decode("utf-8", errors="replace"), err


def command_comparison(path: Path, settings: Settings, home: Path, size: Sizes) -> Figures:
    env = {**os.environ, "WAI_HOME": str(home)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    generated = size.generated
    ids_for = prompt_ids_of(path)
    script = baseline_script()

    def ours(round_: int) -> Run:
        command = [
            WAI, "ask", "--backend", "local", "-m", str(path), "--temperature", "0",
            "--max-tokens", str(generated), "--threads", str(settings.threads), "--no-stats",
            prompt_for(round_),
        ]  # fmt: skip
        if settings.gpu_layers >= 0:
            command[2:2] = ["--gpu-layers", str(settings.gpu_layers)]
        first, last, out, err = time_stdout(command, env)
        # Stopped by the cap (the warning says so): exactly `generated` tokens.
        tokens = generated if "output cap" in err else -1
        return Run(first_token=first, tokens_per_s=rate(generated, first, last), tokens=tokens, text=out)

    def theirs(round_: int) -> Run:
        ids = ids_for(prompt_for(round_))
        # A one-shot `wai ask` sizes its context for this prompt and reply alone, in steps of 256.
        n_ctx = -(-(len(ids) + generated) // 256) * 256
        one_shot = replace(settings, n_ctx=n_ctx, n_batch=min(512, n_ctx))
        args = {"path": str(path), "kwargs": llama_kwargs(one_shot), "ids": ids, "limit": generated}
        first, last, out, err = time_stdout([sys.executable, "-c", script, json.dumps(args)], env)
        produced = int(err.strip().splitlines()[-1])
        return Run(first_token=first, tokens_per_s=rate(produced, first, last), tokens=produced, text=out)

    if not quick():
        ours(0)  # byte-compiled modules and a warm page cache for both, off the clock
        theirs(0)
    a, b = alternate(ours, theirs, size.command_rounds)
    return print_pair(f"command {label_of(path)}", generated, a, b)


def prompt_ids_of(path: Path) -> Callable[[str], list[int]]:
    from wai.conversation import Message
    from wai.llama.native import NativeModel
    from wai.tokens.local_template import tokenize_chat

    vocab = NativeModel.load(path, gpu_layers=0, vocab_only=True)
    return lambda prompt: tokenize_chat(vocab, (Message("user", prompt),))


# Q8_0 against F16


def precision_comparison(q8_0: Path, f16: Path, size: Sizes) -> Figures:
    eight, sixteen = Ours(q8_0, size), Ours(f16, size)
    try:
        eight.warm_up()
        sixteen.warm_up()
        a, b = alternate(
            lambda i: eight.run(prompt_for(i)), lambda i: sixteen.run(prompt_for(i)), size.rounds
        )
    finally:
        eight.close()
        sixteen.close()
    tps = median_ratio(a, b, "tokens_per_s")
    ttft = median_ratio(a, b, "first_token")
    print(
        f"  Q8_0 / F16 tokens/s {tps:.3f}   Q8_0 {statistics.median(r.tokens_per_s for r in a):.1f} / "
        f"F16 {statistics.median(r.tokens_per_s for r in b):.1f} tokens/s; TTFT ratio {ttft:.3f}"
    )
    check_counts("Q8_0 / F16", size.generated, a, b)
    return {"Q8_0 / F16 tokens/s": tps, "Q8_0 / F16 TTFT": ttft}


# Models


@contextmanager
def bench_models() -> Iterator[tuple[list[Path], tuple[Path, Path], str]]:
    """Files to compare on, the (Q8_0, F16) pair, and where they come from."""
    from wai.catalog.builtin import Q4_1_FILE, builtin_dir

    folder = builtin_dir()
    pair = None if quick() else builtin_pair()
    if pair is not None:
        q4_1 = folder / Q4_1_FILE
        yield [pair[0], *([q4_1] if q4_1.is_file() else [])], pair, f"the built-in SmolLM2 in {folder}"
        return
    with tempfile.TemporaryDirectory(prefix="wai-bench-models-") as tmp:
        if quick():
            pair = tiny_llamas(Path(tmp), words=64, layers=2, context=2048)
            yield [pair[0]], pair, "a small tiny generated model (quick mode)"
        else:
            # Larger than the tests' (wider and deeper), so its speed is not all overhead.
            pair = tiny_llamas(Path(tmp), words=700, layers=12, context=4096)
            yield [pair[0]], pair, f"a tiny generated model ({folder} has no SmolLM2 files: run `wai setup`)"


def label_of(path: Path) -> str:
    """A short name for a model file: what follows the model's name (Q8_0-from-Q4_1, Q4_1, f16)."""
    return path.stem.split(".", 1)[-1]


def main() -> Figures:
    from wai.llama import native

    native.lib()  # llama.cpp's log lines go through our quiet handler from here on
    size = sizes()
    load = os.getloadavg()
    print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    if load[0] > BUSY_LOAD:
        print("warning: the machine is busy; these ratios are noisy (run it again on a quiet machine)")
    print(
        f"{size.generated} generated tokens, greedy, {size.threads} thread(s) on both sides, "
        f"{size.rounds} alternating rounds (medians of per-round ratios; ours / baseline)"
    )
    figures: Figures = {}
    with (
        tempfile.TemporaryDirectory(prefix="wai-bench-home-") as home,
        bench_models() as (paths, pair, where),
    ):
        print(f"models: {where}")
        print("model loaded (a REPL turn): stream_turn over LlamaCpp against Llama.generate")
        settings: Settings | None = None
        for path in paths:
            shared, found = loaded_comparison(path, size)
            settings = settings or shared
            figures.update(found)
        assert settings is not None
        print(
            f"  (shared settings: n_ctx {settings.n_ctx}, batch {settings.n_batch}, "
            f"gpu layers {settings.gpu_layers}, flash attention {'on' if settings.flash_attn else 'off'})"
        )
        print("whole command in a pipe: `wai ask --backend local` against `python -c` of the same loop")
        print("  (TTFT from spawn: start-up and load included on both sides)")
        figures.update(command_comparison(paths[0], settings, Path(home), size))
        print("precision, through our backend on the same model")
        figures.update(precision_comparison(*pair, size))
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f}")
    return figures


if __name__ == "__main__":
    main()

"""Exact windows end to end: the real `wai` command one token under, at and over every window.

Remote: every catalog model with a vocabulary (the llama-2, llama-3 and qwen2 families) is asked
through `wai ask` against the loopback Workers AI server, which recounts every body it receives
with the model's own vocabulary and template and refuses (413 / 5021) any that breaks a cap.
Windows up to REAL_WINDOW_LIMIT tokens are tested as the catalog has them; the larger ones
(60000, 80000, 128000) are shrunk to SHRUNK in the user's models.toml, same id and family, so
their vocabulary and template are still exercised without building 100k-token prompts.

Local: a tiny GGUF model registered in the user's models.toml with small windows, through
`wai ask --backend local`; llama.cpp must never meet a prompt or a reply its context cannot hold.

`wai` runs in-process (tests/support/cli.py), one run after another: the time is in loading a
vocabulary, not in the counts.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import run_wai
from tests.support.counting import counter_for
from tests.support.vocab_fixture import vocab_cache, vocab_home
from tests.support.workers_ai_server import RecordedRequest, Simulation, WorkersAIServer, catalog_recount
from wai import settings
from wai.backends.base import BackendName
from wai.catalog.entries import ModelSpec, builtin_catalog_text, load_catalog
from wai.conversation import Message
from wai.tokens.budget import input_limit
from wai.tokens.counters import VocabCounter
from wai.tokens.remote_template import render_llama2
from wai.tokens.vocabularies import FAMILY_VOCABULARIES, vocabulary_for

__all__ = ["vocab_cache", "vocab_home"]

pytest.importorskip("llama_cpp")

REAL_WINDOW_LIMIT = 32768
SHRUNK: dict[str, object] = {"context_window": 300, "max_output": 100, "total_context": 300}
FP16 = "@cf/meta/llama-2-7b-chat-fp16"
# One model per family for the slower checks: a reply as long as the output window, `wai tokens`.
FAMILY_MODELS = {
    "llama-2": "@cf/meta/llama-2-7b-chat-int8",
    "llama-3": "@cf/meta/llama-3.1-8b-instruct",
    "qwen2": "@cf/qwen/qwen2.5-coder-32b-instruct",
}


def _builtin_models() -> dict[str, dict[str, Any]]:
    # The built-in file alone: collection must not read the developer's own models.toml.
    text, _where = builtin_catalog_text()
    models: dict[str, dict[str, Any]] = tomllib.loads(text)["models"]
    return models


VOCAB_MODELS = sorted(
    model_id
    for model_id, entry in _builtin_models().items()
    if model_id.startswith("@cf/") and entry.get("family") in FAMILY_VOCABULARIES
)
SHRUNK_MODELS = [m for m in VOCAB_MODELS if _builtin_models()[m]["context_window"] > REAL_WINDOW_LIMIT]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation(reply_tokens=3, recount=catalog_recount())) as running:
        yield running


@pytest.fixture
def server(
    shared_server: WorkersAIServer, vocab_home: Path, isolated_home: Path
) -> Iterator[WorkersAIServer]:
    """The module's server, its records cleared, recounting with this test's vocabularies and catalog."""
    shared_server.forget()
    shared_server.simulation.reply_tokens = 3
    _write_user_models(isolated_home, {m: SHRUNK for m in SHRUNK_MODELS})
    yield shared_server
    assert shared_server.errors == []


def _write_user_models(home: Path, entries: dict[str, dict[str, object]]) -> None:
    lines: list[str] = []
    for model_id, keys in entries.items():
        lines.append(f'[models."{model_id}"]')
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    (home / "models.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def env_for(server: WorkersAIServer) -> dict[str, str]:
    return {
        "CLOUDFLARE_BASE_URL": server.base_url,
        "CLOUDFLARE_ACCOUNT_ID": "acct",
        "CLOUDFLARE_API_TOKEN": "token",
    }


@dataclass(frozen=True, slots=True)
class Run:
    args: tuple[str, ...]
    stdin: bytes | None = None


def run_all(runs: Sequence[Run], env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    return [run_wai(*run.args, stdin=run.stdin, env=env) for run in runs]


def exact_counter(spec: ModelSpec, backend: BackendName) -> VocabCounter:
    counter = counter_for(spec, backend)
    assert isinstance(counter, VocabCounter), counter.source
    return counter


def sized_text(counter: VocabCounter, target: int, *, word: str = "hello", sep: str = " ") -> str:
    """A user message whose prompt, template included, is exactly `target` tokens.

    `word` repeated costs one token per repetition in this vocabulary: checked at 1 and 2
    repetitions, then at the full length, so the whole text is known to count as predicted.
    """

    def text(n: int) -> str:
        return sep.join([word] * n)

    def count(n: int) -> int:
        return counter.count_prompt((Message("user", text(n)),))

    one = count(1)
    assert count(2) == one + 1, f"{word!r} is not one token per repetition in {counter.source}"
    n = target - one + 1
    assert n >= 1, f"the template alone is {one - 1} tokens, more than {target}"
    assert count(n) == target, f"{n} x {word!r} is not {target} tokens in {counter.source}"
    return text(n)


def arrived(server: WorkersAIServer, text: str) -> list[tuple[RecordedRequest, int]]:
    """The recounted requests whose newest message is `text`, each with its recounted prompt."""
    return [(r, n) for r, n in server.recounts if _newest(r) == text]


def limit_words(spec: ModelSpec, limit: int) -> str:
    """What the refusal must name besides the count: the window, or the total context it fills."""
    return str(spec.context_window if limit == spec.context_window else spec.total_context)


# --- remote: every catalog model with a vocabulary ---------------------------------------------


@dataclass(slots=True)
class ModelRuns:
    """One model's runs: prompts one token under, at and over its input limit, --max-tokens likewise."""

    spec: ModelSpec
    limit: int
    texts: dict[int, str]
    prompts: dict[int, subprocess.CompletedProcess[str]]
    replies: dict[int, subprocess.CompletedProcess[str]]
    arrived: list[tuple[RecordedRequest, int]]  # this model's requests, each with its recount
    violations: list[str]


QUESTION = "where is new york?"
OFFSETS = (-1, 0, 1)


@pytest.fixture(scope="module")
def remote_runs(
    shared_server: WorkersAIServer, vocab_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ModelRuns]:
    """Every model's six runs, all sent at once through one pool: most of the time is start-up."""
    home = tmp_path_factory.mktemp("windows-home")
    (home / "vocab").symlink_to(vocab_cache, target_is_directory=True)
    _write_user_models(home, {m: SHRUNK for m in SHRUNK_MODELS})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WAI_HOME", str(home))
        for name in ("WAI_MODELS", "WAI_MODELS_DIR", "WAI_MODEL", "CLOUDFLARE_BASE_URL"):
            patch.delenv(name, raising=False)
        shared_server.forget()
        catalog = load_catalog()
        plans: dict[str, tuple[ModelSpec, int, dict[int, str]]] = {}
        runs: list[Run] = []
        for model_id in VOCAB_MODELS:
            spec = catalog.get(model_id)
            counter = exact_counter(spec, "remote")
            limit = input_limit(spec)  # the window, or less where the context must leave room to reply
            texts = {d: sized_text(counter, limit + d) for d in OFFSETS}
            plans[model_id] = (spec, limit, texts)
            runs += [Run(("ask", "-m", model_id, "--json", "-"), texts[d].encode()) for d in OFFSETS]
            runs += [
                Run(("ask", "-m", model_id, "--json", "--max-tokens", str(spec.max_output + d), QUESTION))
                for d in OFFSETS
            ]
        done = iter(run_all(runs, env_for(shared_server)))
        assert shared_server.errors == []
    results: dict[str, ModelRuns] = {}
    for model_id, (spec, limit, texts) in plans.items():
        prompts = {d: next(done) for d in OFFSETS}
        replies = {d: next(done) for d in OFFSETS}
        results[model_id] = ModelRuns(
            spec=spec,
            limit=limit,
            texts=texts,
            prompts=prompts,
            replies=replies,
            arrived=[(r, n) for r, n in shared_server.recounts if r.model == model_id],
            violations=[v for v in shared_server.violations if v.startswith(f"{model_id}: ")],
        )
    assert len(shared_server.requests) == len(shared_server.recounts) == 5 * len(VOCAB_MODELS)
    return results


@pytest.mark.parametrize("model_id", VOCAB_MODELS)
def test_prompts_one_under_at_and_over_the_input_limit(
    remote_runs: dict[str, ModelRuns], model_id: str
) -> None:
    runs = remote_runs[model_id]
    spec, limit = runs.spec, runs.limit
    for d in (-1, 0):
        done = runs.prompts[d]
        assert done.returncode == 0, done.stderr
        assert "error" not in done.stderr
        [(request, recounted)] = [(r, n) for r, n in runs.arrived if _newest(r) == runs.texts[d]]
        assert recounted == limit + d
        assert json.loads(done.stdout)["usage"]["prompt_tokens"] == limit + d  # the server's own count
        assert request.json["max_tokens"] == min(spec.max_output, spec.total_context - (limit + d))
    over = runs.prompts[1]
    assert over.returncode == 3
    assert [r for r, _ in runs.arrived if _newest(r) == runs.texts[1]] == []
    assert f"the prompt is {limit + 1} tokens" in over.stderr
    assert limit_words(spec, limit) in over.stderr
    error = json.loads(over.stdout)["error"]  # --json: the refusal as a document
    assert (error["code"], error["exit_status"]) == ("window", 3)
    assert "Traceback" not in over.stderr
    assert runs.violations == []


@pytest.mark.parametrize("model_id", VOCAB_MODELS)
def test_replies_one_under_at_and_over_the_output_window(
    remote_runs: dict[str, ModelRuns], model_id: str
) -> None:
    runs = remote_runs[model_id]
    cap = runs.spec.max_output
    sent = sorted(r.json["max_tokens"] for r, _ in runs.arrived if _newest(r) == QUESTION)
    assert sent == [cap - 1, cap, cap]
    for d, done in runs.replies.items():
        assert done.returncode == 0, done.stderr
        assert ("lowered to" in done.stderr) == (d == 1), done.stderr
    assert (
        f"--max-tokens {cap + 1} is over {model_id}'s output window ({cap}); lowered to {cap}"
        in runs.replies[1].stderr
    )
    assert runs.violations == []


def _newest(request: RecordedRequest) -> str:
    content: str = request.json["messages"][-1]["content"]
    return content


@pytest.mark.parametrize("family", sorted(FAMILY_MODELS))
def test_reply_fills_the_output_window_and_wai_tokens_agrees(server: WorkersAIServer, family: str) -> None:
    model_id = FAMILY_MODELS[family]
    spec = load_catalog().get(model_id)
    counter = exact_counter(spec, "remote")
    limit = input_limit(spec)
    at, over = sized_text(counter, limit), sized_text(counter, limit + 1)
    server.simulation.reply_tokens = spec.max_output + 10  # only max_tokens stops the reply
    reply, counted_at, counted_over = run_all(
        [
            Run(("ask", "-m", model_id, "--max-tokens", str(spec.max_output), "hi")),
            Run(("tokens", "--json", "-m", model_id, "-"), at.encode()),
            Run(("tokens", "--json", "-m", model_id, "-"), over.encode()),
        ],
        env_for(server),
    )
    assert reply.returncode == 0, reply.stderr
    assert reply.stdout == " ".join(f"token{i}" for i in range(1, spec.max_output + 1)) + "\n"
    assert f"the reply stopped at the output cap ({spec.max_output} tokens)" in reply.stderr
    assert server.requests[0].json["max_tokens"] == spec.max_output
    assert server.violations == []

    assert counted_at.returncode == 0, counted_at.stderr
    report = json.loads(counted_at.stdout)
    assert (report["tokens"], report["exact"], report["fits"]) == (limit, True, True)
    assert counted_over.returncode == 3
    assert json.loads(counted_over.stdout)["tokens"] == limit + 1
    assert len(server.requests) == 1  # counting sends nothing


def test_total_context_squeeze_is_recounted_within_4096(server: WorkersAIServer) -> None:
    """fp16 Llama-2: 3072 in and 2500 out cannot both be used in its 4096-token context."""
    spec = load_catalog().get(FP16)
    text = sized_text(exact_counter(spec, "remote"), spec.context_window)
    sent, dry = run_all(
        [
            Run(("ask", "-m", FP16, "--max-tokens", "2500", "-"), text.encode()),
            Run(("ask", "--dry-run", "-m", FP16, "--max-tokens", "2500", "-"), text.encode()),
        ],
        env_for(server),
    )
    assert sent.returncode == 0, sent.stderr
    assert "--max-tokens lowered to 1024" in sent.stderr and "3072" in sent.stderr
    [(request, recounted)] = arrived(server, text)
    assert (recounted, request.json["max_tokens"]) == (3072, 1024)
    assert server.violations == []

    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert (report["prompt_tokens"], report["max_tokens"], report["exact"]) == (3072, 1024, True)
    assert report["prompt"] == f"<s>[INST] {text} [/INST]"
    assert len(server.requests) == 1  # the dry run sent nothing


def test_dry_run_shows_the_templated_prompt_and_sends_nothing(server: WorkersAIServer) -> None:
    spec = load_catalog().get(FP16)
    [done] = run_all(
        [Run(("ask", "--dry-run", "-m", FP16, "-s", "be brief", "where is new york?"))], env_for(server)
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    messages = (Message("system", "be brief"), Message("user", "where is new york?"))
    assert report["prompt"] == render_llama2(messages)
    assert report["prompt"] == "[INST] <<SYS>>\nbe brief\n<</SYS>>\n\nwhere is new york? [/INST]"
    assert report["prompt_tokens"] == exact_counter(spec, "remote").count_prompt(messages)
    assert report["max_tokens"] == spec.max_output
    assert server.requests == []


def test_the_recounting_server_refuses_a_body_over_a_cap(server: WorkersAIServer) -> None:
    """The check above each test's `violations == []`: the receiver does catch a body over a cap."""
    import httpx

    spec = load_catalog().get(FP16)
    text = sized_text(exact_counter(spec, "remote"), spec.context_window)
    url = f"{server.base_url}/accounts/acct/ai/run/{FP16}"
    bodies = [
        {"messages": [{"role": "user", "content": text}], "max_tokens": 1025},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2501},
        {"messages": [{"role": "user", "content": "hi"}]},
    ]
    replies = [httpx.post(url, json=body, timeout=30) for body in bodies]
    assert [r.status_code for r in replies] == [413, 413, 413]
    assert {r.json()["errors"][0]["code"] for r in replies} == {5021}
    assert server.violations == [
        f"{FP16}: prompt 3072 + max_tokens 1025 > total_context 4096",
        f"{FP16}: max_tokens 2501 > max_output 2500",
        f"{FP16}: no max_tokens (the server would default to 256)",
    ]
    server.violations.clear()


@pytest.mark.parametrize("model_id", [FAMILY_MODELS["llama-2"], FAMILY_MODELS["llama-3"]])
def test_tokens_raw_counts_stdin_byte_for_byte(server: WorkersAIServer, model_id: str) -> None:
    spec = load_catalog().get(model_id)
    exact_counter(spec, "remote")  # the vocabulary is installed
    llama_cpp = pytest.importorskip("llama_cpp")
    vocab_path = vocabulary_for(str(spec.family), settings.vocab_dir())
    reference = llama_cpp.Llama(model_path=str(vocab_path), vocab_only=True, verbose=False)
    texts = ["hello world\n", "hello world", "line one\r\n\r\n  tab\there é日本\n\n"]
    done = run_all([Run(("tokens", "--raw", "--json", "-m", model_id), t.encode()) for t in texts])
    counts = []
    for text, result in zip(texts, done, strict=True):
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        # llama.cpp itself, on the same bytes, as a raw prompt is sent: BOS, special tokens parsed.
        direct = reference.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        assert report["tokens"] == len(direct) and report["raw"] is True
        counts.append(report["tokens"])
    assert counts[0] == counts[1] + 1  # the trailing newline is a token of its own


# --- local: a tiny GGUF with small windows -----------------------------------------------------

LOCAL = "tiny-local"
LOCAL_WINDOWS = {"context_window": 200, "max_output": 80, "total_context": 256}


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_gguf import build_tiny_llama

    path = tmp_path_factory.mktemp("windows") / "tiny-windows.q8_0.gguf"
    # Loops, so only max_tokens ends a reply; trained context = total_context, so a prompt at the
    # window plus the reply room left fills llama.cpp's context to the last position.
    build_tiny_llama(path, ftype="q8_0", script="Hi there!", loop=True, context_length=256)
    return path


@pytest.fixture
def local_model(tiny_gguf: Path, isolated_home: Path) -> ModelSpec:
    _write_user_models(isolated_home, {LOCAL: {**LOCAL_WINDOWS, "gguf": str(tiny_gguf), "remote": False}})
    return load_catalog().get(LOCAL)


@pytest.mark.e2e
def test_local_prompts_and_replies_around_every_window(local_model: ModelSpec) -> None:
    spec = local_model
    counter = exact_counter(spec, "local")
    limit = input_limit(spec)
    assert limit == spec.context_window == 200
    texts = {d: sized_text(counter, limit + d, word="x", sep="") for d in (-1, 0, 1)}
    base = ("ask", "--backend", "local", "-m", LOCAL, "--json", "--threads", "1")
    runs = [Run((*base, "-"), texts[d].encode()) for d in (-1, 0, 1)]
    runs += [Run((*base, "--max-tokens", str(spec.max_output + d), "hi")) for d in (-1, 0, 1)]
    under, at, over, *replies = run_all(runs)

    for d, done in ((-1, under), (0, at)):
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        room = spec.total_context - (limit + d)  # 57 and 56: less than max_output, the context is full
        assert result["usage"]["prompt_tokens"] == limit + d  # what llama.cpp evaluated
        assert result["usage"]["completion_tokens"] == room
        assert result["finish_reason"] == "length"
        assert _only_notices(done.stderr), done.stderr
    assert over.returncode == 3
    assert f"the prompt is {limit + 1} tokens" in over.stderr and str(spec.context_window) in over.stderr
    # Under --json the refusal is also the document, with the window error (exit 3).
    error = json.loads(over.stdout)["error"]
    assert (error["code"], error["exit_status"]) == ("window", 3)
    assert _only_notices(over.stderr), over.stderr

    for d, done in zip((-1, 0, 1), replies, strict=True):
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["usage"]["completion_tokens"] == min(spec.max_output, spec.max_output + d)
        assert result["finish_reason"] == "length"
        assert ("lowered to" in done.stderr) == (d == 1)
        assert _only_notices(done.stderr), done.stderr
    assert f"lowered to {spec.max_output}" in replies[2].stderr


def _only_notices(stderr: str) -> bool:
    """stderr holds wai's own one-line notices and nothing from llama.cpp (no context errors)."""
    return all(line.startswith("wai: ") for line in stderr.splitlines())

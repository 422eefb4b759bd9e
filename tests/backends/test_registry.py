"""Backends by name: one rule picks the backend for every command, and a registered one runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.support.cli import run_wai
from tests.support.tiny_gguf import SPLIT_SCRIPT, SPLIT_WHOLE, build_tiny_llama
from wai.app import app
from wai.backends.base import Backend
from wai.backends.registry import registered
from wai.backends.request import Request
from wai.catalog.entries import ModelSpec
from wai.events import Event, Finish, Token, Usage
from wai.tokens.counters import EstimatedCounter, TokenCounter

LLAMA2_INT8 = "@cf/meta/llama-2-7b-chat-int8"


@pytest.mark.e2e
def test_tokens_dry_run_and_ask_agree_on_the_backend_without_credentials(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No credentials, the Llama-2 int8 entry's file in the models folder: `wai ask` runs it
    # locally, so `wai tokens` and `--dry-run` count with the file's own template, not Workers AI's.
    pytest.importorskip("llama_cpp")
    models = isolated_home / "models"
    models.mkdir()
    build_tiny_llama(
        models / "llama-2-7b-chat.Q8_0.gguf",
        ftype="q8_0",
        script=SPLIT_SCRIPT,
        whole=SPLIT_WHOLE,
        chat_template=None,
        after="<0x5D>",
    )
    monkeypatch.setenv("WAI_MODELS_DIR", str(models))

    counted = run_wai("tokens", "-m", LLAMA2_INT8, "--json", "hello there")
    assert counted.returncode == 0, counted.stderr
    report = json.loads(counted.stdout)
    dry = run_wai("ask", "-m", LLAMA2_INT8, "--dry-run", "hello there")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    asked = run_wai("ask", "-m", LLAMA2_INT8, "--threads", "1", "--json", "hello there")
    assert asked.returncode == 0, asked.stderr
    result = json.loads(asked.stdout)

    assert (report["backend"], planned["backend"], result["backend"]) == ("local", "local", "local")
    assert result["text"] == SPLIT_SCRIPT
    assert report["exact"] and planned["exact"]
    assert report["tokens"] == planned["prompt_tokens"] == result["usage"]["prompt_tokens"]


class EchoBackend(Backend):
    """Answers with the last message turned upside down: no network, no model file."""

    title = "Echo"
    closed = 0

    def serves(self, spec: ModelSpec) -> bool:
        return True

    def unavailable(self, spec: ModelSpec) -> str | None:
        return None  # needs no credentials

    def require(self, spec: ModelSpec) -> None:
        return None

    def remedy(self, spec: ModelSpec) -> str:
        return "nothing to do"

    def counter(self, spec: ModelSpec, *, running: bool = False) -> TokenCounter:
        return EstimatedCounter("the echo backend")

    def stream(self, request: Request) -> Iterator[Event]:
        text = request.messages[-1].content[::-1]
        yield Token(text)
        yield Usage(prompt_tokens=request.prompt_tokens or 0, completion_tokens=1, exact=False)
        yield Finish("stop")

    def close(self) -> None:
        EchoBackend.closed += 1


def test_a_backend_registered_by_a_test_runs_wai_ask(isolated_home: Path) -> None:
    EchoBackend.closed = 0
    with registered("remote", EchoBackend):
        done = CliRunner().invoke(app, ["ask", "-m", LLAMA2_INT8, "--no-log", "hello there"])
    assert done.exit_code == 0, done.output
    assert done.stdout == "ereht olleh\n"
    assert EchoBackend.closed == 1  # what the command made, it closed

    # Once the block is left, the real remote backend is back: without credentials it refuses.
    again = run_wai("ask", "-m", LLAMA2_INT8, "--backend", "remote", "hello there")
    assert again.returncode == 2 and "credentials" in again.stderr


@pytest.mark.e2e
def test_making_every_backend_and_asking_it_of_a_model_imports_nothing_heavy() -> None:
    # Choosing and planning cost no start-up time: the HTTP client and llama.cpp are imported by
    # a backend's stream alone (and `open`), never by its class.
    script = """
import sys
from wai.backends.base import BackendSettings
from wai.backends.registry import backend_named, backend_names
from wai.catalog.entries import load_catalog

spec = load_catalog().get("@cf/meta/llama-2-7b-chat-int8")
for name in backend_names():
    backend = backend_named(name, BackendSettings())
    backend.serves(spec), backend.unavailable(spec), backend.title, backend.sampling_ranges
loaded = {name.split(".")[0] for name, module in sys.modules.items() if module is not None}  # None: kept out
heavy = sorted(loaded & {"httpx", "httpcore", "llama_cpp", "starlette"})
print(",".join(heavy))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""

"""A backend added as docs/development.md says (one class, one line in the registry), defined here
in the test suite: `wai ask`, `wai chat`, `wai tokens` and `wai serve` run it with no other change."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from tests.support.cli import run_wai
from wai.backends.base import Backend, LocalOptions
from wai.backends.registry import BACKENDS, Backends, registered
from wai.backends.request import Request
from wai.catalog.entries import Catalog, ModelSpec
from wai.commands.chat.repl import run_chat
from wai.commands.chat.session import ChatOptions
from wai.errors import ConfigError
from wai.events import Event, Finish, Token, Usage
from wai.notices import Notifier
from wai.settings import UserConfig
from wai.tokens.counters import EstimatedCounter, TokenCounter

MIRROR = "mirror"  # the model's name; the backend is named "mirror" too


class Mirror(Backend):
    """Answers with the last message turned around: no network, no model file, no catalog entry."""

    title = "Mirror"

    def claim(
        self, name: str, entry: ModelSpec | None, catalog: Catalog, config: UserConfig
    ) -> ModelSpec | None:
        if name != MIRROR:
            return None
        return ModelSpec(id=MIRROR, context_window=1000, max_output=100, total_context=1100, remote=False)

    def serves(self, spec: ModelSpec) -> bool:
        return spec.id.startswith(MIRROR)

    def unavailable(self, spec: ModelSpec) -> str | None:
        return None if self.serves(spec) else "not a mirror model"

    def require(self, spec: ModelSpec) -> None:
        if not self.serves(spec):
            raise ConfigError(f"{spec.id} is not a mirror model")

    def remedy(self, spec: ModelSpec) -> str:
        return f"use -m {MIRROR}"

    def counter(self, spec: ModelSpec, *, running: bool = False) -> TokenCounter:
        return EstimatedCounter("the mirror backend")

    def stream(self, request: Request) -> Iterator[Event]:
        yield Token(request.messages[-1].content[::-1])
        yield Usage(prompt_tokens=request.prompt_tokens or 0, completion_tokens=1, exact=False)
        yield Finish("stop")


@pytest.fixture
def mirror(isolated_home: Path) -> Iterator[None]:
    with registered(MIRROR, Mirror):
        yield
    assert MIRROR not in BACKENDS  # the registry is as it was


def test_wai_ask_runs_it_by_its_model_and_by_its_name(mirror: None) -> None:
    done = run_wai("ask", "-m", MIRROR, "--no-log", "hello there")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ereht olleh\n"
    named = run_wai("ask", "-m", MIRROR, "--backend", MIRROR, "--no-log", "--json", "hello")
    assert named.returncode == 0, named.stderr
    result = json.loads(named.stdout)
    assert (result["text"], result["backend"]) == ("olleh", MIRROR)


def test_wai_tokens_counts_with_it(mirror: None) -> None:
    done = run_wai("tokens", "-m", MIRROR, "--json", "hello there")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["backend"], report["exact"]) == (MIRROR, False)
    assert "the mirror backend" in report["counted_with"]


def test_wai_chat_runs_it_and_switches_to_it_by_name(mirror: None) -> None:
    out, err = io.StringIO(), io.StringIO()
    with create_pipe_input() as keys:
        keys.send_text("hello there\r/backend mirror\rabc\r\x04")
        code = run_chat(
            ChatOptions(model=MIRROR, log=False),
            Notifier(stream=err),
            stdout=out,
            pt_input=keys,
            pt_output=DummyOutput(),
        )
    assert code == 0, err.getvalue()
    assert "ereht olleh" in out.getvalue() and "cba" in out.getvalue()


def test_wai_serve_runs_it_as_its_local_backend(isolated_home: Path, tmp_path: Path) -> None:
    # wai serve serves local models: it runs them on the backend registered as "local".
    from wai.serve.app import ServeState, build_app
    from wai.serve.worker import Pool
    from wai.turn.planner import TurnPlanner

    weights = tmp_path / "mirror.gguf"
    weights.write_bytes(b"never read")
    spec = ModelSpec(
        id="mirror-local",
        context_window=1000,
        max_output=100,
        total_context=1100,
        remote=False,
        gguf=str(weights),
    )

    async def ask() -> httpx.Response:
        app = build_app(ServeState(token="mirror-token", pool=pool, served=[spec], log=lambda line: None))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wai") as client:
            return await client.post(
                "/v1/chat/completions",
                headers={"Authorization": "Bearer mirror-token"},
                json={
                    "model": spec.id,
                    "messages": [{"role": "user", "content": "hello there"}],
                    "stream": False,
                },
            )

    with registered("local", Mirror):
        pool = Pool(
            {spec.id: spec}, max_queue=2, make_planner=lambda: TurnPlanner(Backends(None, LocalOptions()))
        )
        try:
            reply = asyncio.run(ask())
        finally:
            pool.close()
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"] == {"role": "assistant", "content": "ereht olleh"}

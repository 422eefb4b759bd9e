"""A running `wai serve` over the tiny models, shared by the tests that do not stop it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.serve_process import Served, ServeProcess, write_catalog
from tests.support.tiny_gguf import TinyModel, build_tiny_llama

pytest.importorskip("llama_cpp")
pytest.importorskip("starlette")

LOOP = "Hi 🎉!"


@pytest.fixture(scope="session")
def looping(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Writes "Hi 🎉!" again and again: a reply as long as max_tokens lets it be."""
    path = tmp_path_factory.mktemp("serve-loop") / "loop.q8_0.gguf"
    return build_tiny_llama(path, ftype="q8_0", script=LOOP, loop=True, context_length=32768)


@pytest.fixture(scope="session")
def served(tiny_models: dict[str, TinyModel], looping: TinyModel) -> list[Served]:
    return [
        Served("@cf/test/tiny-f16", tiny_models["f16"]),
        Served("@cf/test/tiny-q8_0", tiny_models["q8_0"]),
        # A long reply, stopped by the client or by the output window (40 tokens).
        Served("@cf/test/loop", looping, context_window=2000, max_output=30000, total_context=32768),
        Served("@cf/test/loop-capped", looping, context_window=200, max_output=40, total_context=400),
    ]


@pytest.fixture(scope="session")
def wai_serve(tmp_path_factory: pytest.TempPathFactory, served: list[Served]) -> Iterator[ServeProcess]:
    home = tmp_path_factory.mktemp("serve-home")
    write_catalog(home, served)
    with ServeProcess(home) as running:
        yield running


@pytest.fixture
def client_home(isolated_home: Path, served: list[Served]) -> Path:
    """This test's WAI_HOME with the served models in its catalog, for `wai` as the client."""
    write_catalog(isolated_home, served)
    return isolated_home

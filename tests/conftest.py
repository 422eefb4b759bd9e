"""Every test runs with its own WAI_HOME and without the developer's credentials."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.workers_ai_server import WorkersAIServer, workers_ai_server

if TYPE_CHECKING:
    from tests.support.tiny_gguf import TinyModel

__all__ = ["workers_ai_server"]  # the loopback Workers AI server, for every test that asks for it

LOOPBACK_API_TOKEN = "loopback-token-1"

# A suite started in the background (`make test &`, nohup) inherits SIGINT and SIGHUP ignored, and
# wai rightly keeps ignoring what it was started ignoring; the Ctrl-C and hang-up tests need them
# live in the processes they start.
for _signal, _handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGHUP, signal.SIG_DFL)):
    if signal.getsignal(_signal) == signal.SIG_IGN:
        signal.signal(_signal, _handler)

_ISOLATED = (
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_BASE_URL",
    "WAI_MODELS",
    "WAI_MODELS_DIR",
    "WAI_MODEL",
    "NO_COLOR",
)


# Fixtures that bring up what only a real process shows (real llama.cpp on tiny GGUF files): a test
# that asks for one is end to end, whatever else it does.
E2E_FIXTURES = frozenset({"tiny_models"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "wai-home"
    home.mkdir()
    monkeypatch.setenv("WAI_HOME", str(home))
    for name in _ISOLATED:
        monkeypatch.delenv(name, raising=False)
    yield home


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkersAIServer]:
    """The loopback server with credentials pointing at it in this process's environment."""
    with WorkersAIServer() as running:
        monkeypatch.setenv("CLOUDFLARE_BASE_URL", running.base_url)
        monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "account-1")
        monkeypatch.setenv("CLOUDFLARE_API_TOKEN", LOOPBACK_API_TOKEN)
        yield running


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyModel]:
    """Tiny deterministic llamas in F16 and Q8_0 that write SPLIT_SCRIPT, built once per run."""
    from tests.support.tiny_gguf import SPLIT_SCRIPT, SPLIT_WHOLE, build_tiny_llama

    folder = tmp_path_factory.mktemp("tiny-models")
    return {
        ftype: build_tiny_llama(
            folder / f"tiny.{ftype}.gguf", ftype=ftype, script=SPLIT_SCRIPT, whole=SPLIT_WHOLE
        )
        for ftype in ("f16", "q8_0")
    }

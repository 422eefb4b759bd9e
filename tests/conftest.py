"""Every test runs with its own WAI_HOME and without the developer's credentials."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

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

# Forking this process while it runs threads (the look-alike servers, a wai serve's reader) may
# leave the child deadlocked before it execs. Python 3.12 and later warn, but that warning cannot be
# turned into an error (under an error filter the interpreter drops it), so the fork is noted here,
# in the parent, and fails the test that made it; on 3.11 as well.
_forks_beside_threads: list[str] = []


def _before_fork() -> None:
    if threading.active_count() > 1:
        _forks_beside_threads.append(", ".join(sorted(t.name for t in threading.enumerate())))


os.register_at_fork(before=_before_fork)


@pytest.fixture(autouse=True)
def _no_fork_beside_threads() -> Iterator[None]:
    _forks_beside_threads.clear()
    yield
    if _forks_beside_threads:
        pytest.fail(
            f"forked this process while it ran threads ({_forks_beside_threads[0]}): the child may "
            "deadlock before it execs; start it with subprocess (tests.support.pty_spawn for a "
            "terminal), without preexec_fn",
            pytrace=False,
        )


_ISOLATED = (
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_BASE_URL",
    "WAI_MODELS",
    "WAI_MODELS_DIR",
    "WAI_MODEL",
    "WAI_STATE_CACHE_BYTES",
    "NO_COLOR",
    # Set by pytest-xdist's workers (80 x 24): a terminal a test opens must show its own size.
    "COLUMNS",
    "LINES",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that loads real llama.cpp models (any fixture that builds a TinyModel, tiny_models
    among them) is end to end, whatever else it does."""
    for item in items:
        if _builds_tiny_models(item):
            item.add_marker(pytest.mark.e2e)


def _builds_tiny_models(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        "TinyModel" in str(getattr(definition.func, "__annotations__", {}).get("return", ""))
        for definitions in info.name2fixturedefs.values()
        for definition in definitions
    )


@pytest.fixture(autouse=True)
def _processes_and_models_are_e2e(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts a process (wai itself, a shell, a terminal) or loads a real llama.cpp
    model is marked e2e, so that `make test-fast` stays in-process and fast; doing either in any
    other test fails it."""
    if request.node.get_closest_marker("e2e") is not None:
        return
    name = request.node.nodeid

    def refuse(what: str) -> Callable[..., NoReturn]:
        def refused(*args: object, **kwargs: object) -> NoReturn:
            raise AssertionError(f"{name} {what}: mark it e2e, or run wai in-process (run_wai)")

        return refused

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse("starts a process"))
    monkeypatch.setattr(os, "fork", refuse("starts a process"))
    monkeypatch.setattr(os, "forkpty", refuse("starts a process"))
    try:
        import llama_cpp
    except ImportError:  # an install without the `local` extra
        return
    load, refused = llama_cpp.llama_model_load_from_file, refuse("loads a llama.cpp model")

    def vocabularies_only(path: bytes, params: Any) -> Any:
        # A vocabulary alone (what token counts use) is read in milliseconds: not a model.
        return load(path, params) if params.vocab_only else refused()

    monkeypatch.setattr(llama_cpp, "llama_model_load_from_file", vocabularies_only)


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

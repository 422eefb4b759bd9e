"""End to end against a real engine: llama-cpp-python's own OpenAI-compatible server
(`python -m llama_cpp.server`, its `server` extra) on a tiny GGUF model, as a provider."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.tiny_gguf import TinyModel

CONTEXT = 256


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _why_not() -> str | None:
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError as exc:
        return f"llama_cpp.server cannot start here: {exc} (the `test` extra installs its packages)"
    return None


@pytest.fixture(scope="module")
def engine(tiny_models: dict[str, TinyModel], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running llama_cpp.server serving the tiny Q8_0 model as `tiny`."""
    why = _why_not()
    if why is not None:
        pytest.skip(why)
    port = _free_port()
    log = tmp_path_factory.mktemp("engine") / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_models["q8_0"].path),
             "--model_alias", "tiny", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(CONTEXT),
             "--verbose", "false"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.skip(f"llama_cpp.server exited at start: {log.read_text(errors='replace')[-500:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server did not answer within 60 s: {log.read_text(errors='replace')[-500:]}"
                )
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _configure(home: Path, base: str) -> None:
    (home / "config.toml").write_text(
        f'[providers.lcp]\ntype = "openai"\nbase_url = "{base}"\n', encoding="utf-8"
    )
    (home / "models.toml").write_text(
        f'[models."lcp:tiny"]\ncontext_window = {CONTEXT}\nmax_output = 64\ntotal_context = {CONTEXT}\n',
        encoding="utf-8",
    )


def test_wai_asks_llama_cpp_server_and_gets_the_models_text(engine: str, isolated_home: Path) -> None:
    _configure(isolated_home, engine)
    run = run_wai("ask", "-m", "lcp:tiny", "--temperature", "0", "--json", "hi", timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["text"].startswith("Hello, world!"), result
    assert result["backend"] == "openai"
    # llama_cpp.server streams no usage and offers no /tokenize: both figures are estimates.
    assert result["usage"]["exact"] is False
    piped = run_wai("ask", "-m", "lcp:tiny", "--temperature", "0", "hi", timeout=120)
    assert piped.returncode == 0 and piped.stdout == result["text"] + "\n"


def test_the_engines_model_list_and_an_unknown_model(engine: str, isolated_home: Path) -> None:
    _configure(isolated_home, engine)
    run = run_wai("ask", "-m", "lcp:nonesuch", "hi", timeout=120)
    assert run.returncode == 2
    assert "lcp does not serve the model 'nonesuch'" in run.stderr and "tiny" in run.stderr

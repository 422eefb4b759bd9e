"""The remote-only install (`pip install .`, no extras: no llama.cpp, no jinja2) in a fresh venv.

A vocabulary folder left by an earlier full install's `wai setup` is where it once crashed: the
remote path must count with the estimate, say so, and answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.vocab_fixture import vocab_cache, vocab_home
from tests.support.workers_ai_server import Simulation, WorkersAIServer

__all__ = ["vocab_cache", "vocab_home"]

REPO = Path(__file__).resolve().parents[1]
MODEL = "@cf/meta/llama-3.1-8b-instruct"  # family llama-3: its vocabulary is in the folder
# What pip says when it cannot reach an index or find a dependency there.
_UNREACHABLE = (
    "No matching distribution found",
    "Could not find a version",
    "NewConnectionError",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Failed to establish a new connection",
)


@pytest.fixture(scope="module")
def remote_only_wai(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("remote-only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        if any(sign in done.stderr for sign in _UNREACHABLE):
            pytest.skip(f"the package index is not reachable: {done.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip install . failed:\n{done.stderr}")
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {row["name"].lower() for row in json.loads(listed.stdout)}
    assert "wai" in names and not names & {"llama-cpp-python", "jinja2"}, names
    return venv / "bin" / "wai"


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation(reply_tokens=6)) as running:
        yield running


def run(wai: Path, *args: str, server: WorkersAIServer) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CLOUDFLARE_BASE_URL": server.base_url,
        "CLOUDFLARE_ACCOUNT_ID": "acct",
        "CLOUDFLARE_API_TOKEN": "token-1",
    }
    return subprocess.run(
        [str(wai), *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=60
    )


@pytest.mark.e2e
def test_remote_ask_and_tokens_work_without_llama_cpp_beside_a_vocabulary_folder(
    remote_only_wai: Path, vocab_home: Path, server: WorkersAIServer
) -> None:
    assert (vocab_home / "ggml-vocab-llama-bpe.gguf").is_file()
    asked = run(remote_only_wai, "ask", "-m", MODEL, "where is new york?", server=server)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == "token1 token2 token3 token4 token5 token6\n"
    assert "Traceback" not in asked.stderr
    assert len(server.requests) == 1
    planned = run(remote_only_wai, "ask", "-m", MODEL, "--dry-run", "where is new york?", server=server)
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["exact"] is False  # the prompt was counted by the estimate

    counted = run(remote_only_wai, "tokens", "-m", MODEL, "--json", "where is new york?", server=server)
    assert counted.returncode == 0, counted.stderr
    report = json.loads(counted.stdout)
    assert report["exact"] is False
    assert report["counted_with"] == "estimate (llama-cpp-python not installed)"

"""Retired models: refused before sending on Cloudflare's own API, the server's call elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.tiny_gguf import TinyModel
from tests.support.workers_ai_server import Reply, WorkersAIServer

FP16 = "@cf/meta/llama-2-7b-chat-fp16"
SUCCESSOR = "@cf/meta/llama-3.1-8b-instruct-fp8"
CREDENTIALS = {"CLOUDFLARE_ACCOUNT_ID": "acct123", "CLOUDFLARE_API_TOKEN": "tok-retired"}


@pytest.fixture
def trap() -> Iterator[WorkersAIServer]:
    """A loopback server as the https proxy: any attempt to reach Cloudflare's API lands here."""
    with WorkersAIServer() as running:
        yield running


def cloudflare_env(trap: WorkersAIServer) -> dict[str, str]:
    # No CLOUDFLARE_BASE_URL: the default, Cloudflare's own API.
    proxy = f"http://127.0.0.1:{trap.port}"
    return {**CREDENTIALS, "HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wai: error: "), stderr
    return lines[0].removeprefix("wai: error: ")


@pytest.mark.parametrize("backend", ["remote", "auto"])
def test_on_cloudflares_api_a_retired_model_is_refused_before_sending(
    trap: WorkersAIServer, isolated_home: Path, backend: str
) -> None:
    done = run_wai("ask", "-m", FP16, "--backend", backend, "hello", env=cloudflare_env(trap))
    assert done.returncode == 2
    assert done.stdout == ""
    assert one_error_line(done.stderr) == (
        f"Workers AI retired {FP16} on 2026-05-30; use {SUCCESSOR} instead, or run it on the local "
        f"backend: --backend local (put llama-2-7b-chat.f16.gguf in {isolated_home / 'models'})"
    )
    assert trap.requests == []  # nothing left the machine


def test_the_proxy_trap_does_see_a_request_that_is_sent(trap: WorkersAIServer) -> None:
    # The trap above proves something only if a request to Cloudflare's API would reach it.
    done = run_wai("ask", "-m", SUCCESSOR, "--connect-timeout", "2", "hello", env=cloudflare_env(trap))
    assert done.returncode == 1
    assert [r.method for r in trap.requests][:1] == ["CONNECT"]
    assert trap.requests[0].path.startswith("api.cloudflare.com:443")


def test_auto_runs_a_retired_model_locally_when_its_file_is_there(
    trap: WorkersAIServer, isolated_home: Path, tiny_models: dict[str, TinyModel]
) -> None:
    pytest.importorskip("llama_cpp")
    models = isolated_home / "models"
    models.mkdir()
    (models / "llama-2-7b-chat.f16.gguf").symlink_to(tiny_models["f16"].path)
    # The tiny file was trained on 512 tokens, so the reply is kept short.
    done = run_wai(
        "ask", "-m", FP16, "--threads", "1", "--max-tokens", "100", "hello", env=cloudflare_env(trap)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == tiny_models["f16"].script + "\n"
    assert trap.requests == []
    listed = run_wai("models", env=cloudflare_env(trap))
    line = next(line for line in listed.stdout.splitlines() if line.startswith(FP16 + " "))
    assert "no: retired on Workers AI since 2026-05-30" in line and line.count("yes") == 1  # local


def test_against_another_base_url_the_request_is_sent_and_the_server_decides(server: WorkersAIServer) -> None:
    done = run_wai("ask", "-m", FP16, "hello")
    assert done.returncode == 0, done.stderr
    assert len(server.requests) == 1


def test_a_410_5028_from_the_server_gets_the_same_message(
    server: WorkersAIServer, isolated_home: Path
) -> None:
    server.script(
        Reply.error(410, 5028, "AiError: Model has been deprecated: retired, deprecated on 2026-05-30")
    )
    done = run_wai("ask", "-m", FP16, "hello")
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert line.startswith(
        f"Workers AI retired {FP16} on 2026-05-30 (HTTP 410, code 5028: AiError: Model has"
    )
    assert line.endswith(
        f"; use {SUCCESSOR} instead, or run it on the local backend: --backend local "
        f"(put llama-2-7b-chat.f16.gguf in {isolated_home / 'models'})"
    )
    assert len(server.requests) == 1  # not retried


def test_a_model_the_catalog_thinks_current_is_named_retired_by_the_server(server: WorkersAIServer) -> None:
    server.script(Reply.error(410, 5028, "AiError: Model has been deprecated: gone on 2026-05-30"))
    done = run_wai("ask", "-m", "@cf/meta/llama-3.2-1b-instruct", "hello")
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    # No date in the catalog, none in the message: the code alone says it; a current Llama is named.
    assert line.startswith("Workers AI retired @cf/meta/llama-3.2-1b-instruct (HTTP 410, code 5028")
    assert f"use {SUCCESSOR} instead" in line


def test_models_lists_retired_models_apart_with_what_to_use_instead() -> None:
    done = run_wai("models")
    lines = done.stdout.splitlines()
    split = lines.index("retired on Workers AI (the local backend still runs those with a gguf file):")
    assert not any(line.startswith(FP16 + " ") for line in lines[:split])
    fp16 = next(line for line in lines[split:] if line.startswith(FP16 + " "))
    assert fp16.endswith(f"retired on Workers AI since 2026-05-30, use {SUCCESSOR} instead")
    gemma = next(line for line in lines[split:] if line.startswith("@cf/google/gemma-3-12b-it "))
    assert gemma.endswith("use @cf/google/gemma-4-26b-a4b-it instead")

"""The README's steps for pointing `wai` at a `wai serve`, followed as a newcomer would: a real
server on 127.0.0.1 over a tiny model, `wai models --refresh`, then `wai ask` without -m."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_wai
from tests.support.serve_process import ServeProcess
from tests.support.tiny_gguf import SPLIT_SCRIPT as SCRIPT
from tests.support.tiny_gguf import TinyModel


def test_after_a_refresh_from_wai_serve_the_default_model_is_one_it_serves(
    tmp_path: Path, isolated_home: Path, tiny_models: dict[str, TinyModel]
) -> None:
    tiny = tiny_models["q8_0"]
    served = tiny.path.name  # a .gguf path is served under its file name
    with ServeProcess(tmp_path / "server", "-m", str(tiny.path)) as server:
        env = server.client_env()
        # Before any refresh wai knows only Cloudflare's models: the server does not serve the
        # default one, and the error says so, not that Cloudflare may have retired it.
        before = run_wai("ask", "where is new york?", env=env)
        assert before.returncode == 2, before.stderr
        assert "retire" not in before.stderr
        assert f"{server.base_url} does not serve the model @cf/" in before.stderr
        assert "`wai models --refresh`" in before.stderr
        refreshed = run_wai("models", "--refresh", "--json", env=env)
        assert refreshed.returncode == 0, refreshed.stderr
        assert f"read 1 text-generation model from {server.base_url}" in refreshed.stderr
        assert json.loads(refreshed.stdout)["default_model"] == served
        asked = run_wai("ask", "where is new york?", env=env)
        assert (asked.returncode, asked.stdout) == (0, SCRIPT + "\n"), asked.stderr
        listed = run_wai("models", env=env)
        assert f"default model: {served} (" in listed.stdout
        assert server.base_url in listed.stdout.split("default model:", 1)[1].splitlines()[0]
    # Back on Cloudflare's own API the default is Cloudflare's again, whatever was refreshed.
    cloudflare = {**env, "CLOUDFLARE_BASE_URL": "https://api.cloudflare.com/client/v4"}
    dry = run_wai("ask", "--dry-run", "--json", "hi", env=cloudflare)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["model"] == "@cf/meta/llama-3.1-8b-instruct-fp8"


def test_after_a_refresh_from_wai_serve_ask_schema_is_held_by_the_server(
    tmp_path: Path, isolated_home: Path, tiny_models: dict[str, TinyModel]
) -> None:
    tiny = tiny_models["q8_0"]
    with ServeProcess(tmp_path / "server", "-m", str(tiny.path)) as server:
        env = server.client_env()
        assert run_wai("models", "--refresh", env=env).returncode == 0
        # The server holds the reply with its grammar; wai refused it as a model without JSON mode.
        asked = run_wai(
            "ask", "--schema", "ok bool", "--temperature", "0", "--max-tokens", "40", "hi", env=env
        )
        assert asked.returncode == 0, asked.stderr
        assert asked.stdout.count("\n") == 1 and json.loads(asked.stdout)["ok"] in (True, False)
        # A reply that is a string, held by the server, is a string to wai too (not "not JSON").
        word = run_wai("ask", "--schema", '{"enum": ["yes", "no"]}', "--max-tokens", "10", "hi", env=env)
        assert word.returncode == 0, word.stderr
        assert json.loads(word.stdout) in ("yes", "no")

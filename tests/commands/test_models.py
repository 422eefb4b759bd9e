from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support import pty_spawn
from tests.support.cli import run_wai


def test_help_lists_every_command() -> None:
    done = run_wai("--help")
    assert done.returncode == 0
    for command in ("ask", "models", "setup"):
        assert command in done.stdout


def test_models_json_says_why_a_backend_cannot_serve() -> None:
    done = run_wai("models", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in json.loads(done.stdout)["models"]}
    int8 = rows["@cf/meta/llama-2-7b-chat-int8"]
    assert (int8["context_window"], int8["max_output"]) == (2048, 1800)
    assert int8["backends"]["remote"]["available"] is False
    assert "CLOUDFLARE_API_TOKEN" in int8["backends"]["remote"]["reason"]
    assert "missing" in int8["backends"]["local"]["reason"]


def test_models_json_with_credentials_marks_remote_available() -> None:
    env = {"CLOUDFLARE_ACCOUNT_ID": "acc", "CLOUDFLARE_API_TOKEN": "tok"}
    done = run_wai("models", "--json", env=env)
    rows = {row["id"]: row for row in json.loads(done.stdout)["models"]}
    assert rows["@cf/meta/llama-3.1-8b-instruct-fp8"]["backends"]["remote"]["available"] is True
    assert rows["smollm2-135m-instruct"]["backends"]["remote"]["available"] is False
    # Retired on Cloudflare's own API, which is where these credentials point.
    fp16 = rows["@cf/meta/llama-2-7b-chat-fp16"]
    assert fp16["backends"]["remote"] == {
        "available": False,
        "reason": "retired on Workers AI since 2026-05-30",
    }
    assert fp16["use_instead"] == "@cf/meta/llama-3.1-8b-instruct-fp8"


def test_against_another_base_url_a_retired_model_is_the_servers_call(server: object) -> None:
    done = run_wai("models", "--json")
    rows = {row["id"]: row for row in json.loads(done.stdout)["models"]}
    fp16 = rows["@cf/meta/llama-2-7b-chat-fp16"]
    assert fp16["retired"] is True
    assert fp16["backends"]["remote"]["available"] is True


def test_models_table_in_a_pipe_has_no_escape_codes() -> None:
    done = run_wai("models")
    assert done.returncode == 0
    assert "@cf/meta/llama-2-7b-chat-fp16" in done.stdout
    assert "\x1b[" not in done.stdout


def test_broken_user_catalog_is_exit_2_naming_the_key(isolated_home: object) -> None:
    from pathlib import Path

    home = Path(str(isolated_home))
    (home / "models.toml").write_text('[models."m"]\ncontext_window = -4\nmax_output = 3\n')
    done = run_wai("models")
    assert done.returncode == 2
    assert "model 'm', key 'context_window'" in done.stderr
    assert "Traceback" not in done.stderr


def test_remote_model_without_credentials_names_both_variables() -> None:
    done = run_wai("ask", "-m", "@cf/meta/llama-3.1-8b-instruct", "hello")
    assert done.returncode == 2
    assert "CLOUDFLARE_ACCOUNT_ID" in done.stderr and "CLOUDFLARE_API_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_llama_cpp_python_models_says_how_to_get_the_local_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A module that refuses to import stands in for an install without the `local` extra.
    from wai.llama import native

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setattr(native, "_lib", None)  # as a fresh process has it: not loaded yet
    done = run_wai("models")
    assert done.returncode == 0, done.stderr
    assert "pip install 'wai[local]'" in done.stdout.splitlines()[-1]


@pytest.mark.e2e
def test_on_an_80_column_terminal_every_model_id_stays_on_one_line() -> None:
    from tests.render.terminal import environment, finish
    from tests.support.cli import WAI
    from wai.catalog.entries import load_catalog

    child = pty_spawn.spawn(
        WAI, ["models"], env=environment(), dimensions=(60, 80), encoding="utf-8", timeout=30
    )
    run = finish(child, 60, 80)
    assert run.exit_status == 0
    for spec in load_catalog():
        assert any(line.startswith(spec.id + " ") for line in run.lines), spec.id
    assert all(len(line) <= 80 for line in run.lines)
    assert any(line.startswith("not remote: ") for line in run.lines)
    # The retired models come after a title of their own, each with its day.
    title = next(i for i, line in enumerate(run.lines) if line.startswith("retired on Workers AI"))
    fp16 = next(i for i, line in enumerate(run.lines) if line.startswith("@cf/meta/llama-2-7b-chat-fp16 "))
    current = next(i for i, line in enumerate(run.lines) if line.startswith("@cf/openai/gpt-oss-120b "))
    assert current < title < fp16
    assert "2026-05-30" in run.lines[fp16]
    # Too narrow for a column of whole ids: what to use instead follows, one line per successor.
    assert any(
        line.startswith("use @cf/meta/llama-3.1-8b-instruct-fp8 instead of llama-2-7b-chat-int8,")
        for line in run.lines
    )
    assert any(line.startswith("Workers AI models: the built-in list") for line in run.lines)


def test_an_alias_in_the_users_file_names_a_builtin_model(isolated_home: Path) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."smollm2-135m-instruct-q8_0"]\naliases = ["smollm2"]\n'
        '[models."@cf/meta/llama-3.1-8b-instruct"]\naliases = ["l31"]\n',
        encoding="utf-8",
    )
    for alias, model in (
        ("smollm2", "smollm2-135m-instruct-q8_0"),
        ("l31", "@cf/meta/llama-3.1-8b-instruct"),
    ):
        done = run_wai("tokens", "-m", alias, "--json", "hi")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["model"] == model
    # The built-in model keeps its other alias; `wai models` lists them all.
    assert (
        json.loads(run_wai("tokens", "-m", "builtin", "--json", "hi").stdout)["model"]
        == "smollm2-135m-instruct"
    )
    listed = run_wai("models").stdout
    assert (
        "smollm2 = smollm2-135m-instruct-q8_0" in listed and "l31 = @cf/meta/llama-3.1-8b-instruct" in listed
    )
    assert "builtin = smollm2-135m-instruct," in listed and "smollm2 = smollm2-135m-instruct," not in listed


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            '[models."smollm2-135m-instruct"]\naliases = ["@cf/meta/llama-3.1-8b-instruct"]\n',
            "is the id of another",
        ),
        (
            '[models."smollm2-135m-instruct"]\naliases = ["x"]\n'
            '[models."smollm2-135m-instruct-f16"]\naliases = ["x"]\n',
            "'x' is also an alias of 'smollm2-135m-instruct'",
        ),
    ],
)
def test_an_alias_that_would_name_two_models_is_refused(
    isolated_home: Path, body: str, fragment: str
) -> None:
    (isolated_home / "models.toml").write_text(body, encoding="utf-8")
    done = run_wai("models")
    assert done.returncode == 2 and fragment in done.stderr and done.stderr.count("\n") == 1


def test_the_default_model_is_named(isolated_home: Path) -> None:
    remote, local = "@cf/meta/llama-3.1-8b-instruct-fp8", "smollm2-135m-instruct"
    plain = run_wai("models").stdout
    assert f"default model: {local} (no Workers AI credentials; with them {remote})\n" in plain
    assert json.loads(run_wai("models", "--json").stdout)["default_model"] == local
    env = {"CLOUDFLARE_ACCOUNT_ID": "acc", "CLOUDFLARE_API_TOKEN": "tok"}
    assert f"default model: {remote} (Workers AI credentials are set; without them {local})\n" in (
        run_wai("models", env=env).stdout
    )
    assert json.loads(run_wai("models", "--json", env=env).stdout)["default_model"] == remote
    assert "default model: l31 (set by WAI_MODEL)" in run_wai("models", env={"WAI_MODEL": "l31"}).stdout
    ask_page = Path(__file__).resolve().parents[2] / "docs" / "commands" / "ask.md"
    assert f"`{remote}` on Workers AI" in ask_page.read_text(encoding="utf-8")

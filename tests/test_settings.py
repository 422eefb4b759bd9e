from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.workers_ai_server import WorkersAIServer
from wai.errors import ConfigError
from wai.settings import load_credentials, load_user_config


def test_environment_wins_over_config_toml(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (isolated_home / "config.toml").write_text('account_id = "from-file"\napi_token = "file-token"\n')
    assert load_credentials() is not None
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "from-env")
    credentials = load_credentials()
    assert credentials is not None and credentials.account_id == "from-env"
    assert "file-token" not in repr(credentials)


def test_a_misspelt_config_key_is_named(isolated_home: Path) -> None:
    path = isolated_home / "config.toml"
    path.write_text('api-token = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_user_config()
    assert str(path) in str(caught.value) and "'api-token'" in str(caught.value)


def test_an_unknown_default_model_says_who_chose_it(isolated_home: Path) -> None:
    done = run_wai("ask", "hi", env={"WAI_MODEL": "nosuch"})
    assert done.returncode == 2 and "set by WAI_MODEL" in done.stderr
    (isolated_home / "config.toml").write_text('default_model = "gone"\n')
    done = run_wai("ask", "hi")
    assert done.returncode == 2 and "default_model in" in done.stderr


@pytest.mark.parametrize("token", ["\u201cabc-123-secret\u201d", "abc-123\u200b-secret"])
def test_a_token_a_header_cannot_carry_is_one_line_that_never_shows_it(
    server: WorkersAIServer, isolated_home: Path, token: str
) -> None:
    done = run_wai("ask", "-m", "@cf/meta/llama-2-7b-chat-fp16", "hi", env={"CLOUDFLARE_API_TOKEN": token})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "the API token in CLOUDFLARE_API_TOKEN contains a character that cannot be sent" in done.stderr
    assert "secret" not in done.stderr
    assert server.requests == []
    # The same token in config.toml: the message names the file.
    (isolated_home / "config.toml").write_text(f'api_token = "{token}"\n', encoding="utf-8")
    done = run_wai("ask", "-m", "@cf/meta/llama-2-7b-chat-fp16", "hi", env={"CLOUDFLARE_API_TOKEN": ""})
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"the API token in api_token in {isolated_home / 'config.toml'}" in done.stderr
    assert "secret" not in done.stderr
    assert server.requests == []


@pytest.mark.parametrize("name", ["config.toml", "models.toml"])
def test_a_file_that_is_not_utf8_is_one_line_naming_it(isolated_home: Path, name: str) -> None:
    path = isolated_home / name
    path.write_bytes(b'# caf\xe9\n[models."x"]\ncontext_window = 10\nmax_output = 5\n')
    for command in (("models",), ("ask", "hi"), ("tokens", "hi")):
        done = run_wai(*command)
        assert done.returncode == 2, done.stderr
        assert (
            done.stderr == f"wai: error: {path}: not valid UTF-8 (byte 6 is 0xe9) (save the file as UTF-8)\n"
        )


@pytest.mark.parametrize(
    "command", [["logs"], ["logs", "--usage"], ["ask", "-m", "smollm2", "hi"], ["models"]]
)
def test_a_wai_home_that_is_a_file_is_one_line_naming_it(tmp_path: Path, command: list[str]) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    done = run_wai(*command, env={"WAI_HOME": str(home)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"wai: error: WAI_HOME is {home}, which is a file, not a folder (point WAI_HOME at a folder "
        "(it is made when missing), or unset it)"
    ]
    assert done.stdout == ""

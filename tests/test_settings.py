from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import run_wai
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

from __future__ import annotations

from pathlib import Path

import pytest

from wai.catalog.entries import load_catalog
from wai.errors import ConfigError


def test_builtin_catalog_has_the_announcement_models() -> None:
    catalog = load_catalog()
    int8 = catalog.get("@cf/meta/llama-2-7b-chat-int8")
    fp16 = catalog.get("@cf/meta/llama-2-7b-chat-fp16")
    assert (int8.context_window, int8.max_output, int8.precision) == (2048, 1800, "q8_0")
    assert (fp16.context_window, fp16.max_output, fp16.precision) == (3072, 2500, "f16")
    assert fp16.total_context == 4096 and fp16.remote
    assert catalog.get("smollm2").id == "smollm2-135m-instruct"
    assert not catalog.get("smollm2").remote


def test_user_file_extends_and_overrides_key_by_key(isolated_home: Path) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."@cf/meta/llama-2-7b-chat-int8"]\nmax_output = 100\n'
        '[models."mine"]\ncontext_window = 10\nmax_output = 5\ngguf = "/abs/mine.gguf"\n'
    )
    catalog = load_catalog()
    int8 = catalog.get("@cf/meta/llama-2-7b-chat-int8")
    assert (int8.context_window, int8.max_output) == (2048, 100)
    mine = catalog.get("mine")
    assert mine.total_context == 15 and not mine.remote
    assert mine.gguf_path() == Path("/abs/mine.gguf")


def test_relative_gguf_resolves_against_models_dir(isolated_home: Path) -> None:
    spec = load_catalog().get("@cf/meta/llama-2-7b-chat-fp16")
    assert spec.gguf_path() == isolated_home / "models" / "llama-2-7b-chat.f16.gguf"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('[models."x"]\ncontext_window = "big"\nmax_output = 5\n', "model 'x', key 'context_window'"),
        ('[models."x"]\ncontext_window = 10\n', "model 'x', key 'max_output'"),
        ('[models."x"]\ncontext_window = 10\nmax_output = 5\nremote = "yes"\n', "key 'remote'"),
        ('[models."x"]\ncontext_window = 10\nmax_output = 5\ncontex = 3\n', "key 'contex'"),
        ("[models\nbroken", "not valid TOML"),
    ],
)
def test_malformed_user_file_names_file_model_and_key(isolated_home: Path, body: str, fragment: str) -> None:
    path = isolated_home / "models.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as caught:
        load_catalog()
    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)
    assert caught.value.exit_code == 2


def test_wai_models_points_at_another_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[models."elsewhere"]\ncontext_window = 7\nmax_output = 3\n')
    monkeypatch.setenv("WAI_MODELS", str(other))
    assert load_catalog().get("elsewhere").context_window == 7
    monkeypatch.setenv("WAI_MODELS", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_catalog()


def test_unknown_model_says_where_to_look() -> None:
    with pytest.raises(ConfigError, match="wai models"):
        load_catalog().get("@cf/nobody/nothing")


@pytest.mark.parametrize(
    ("model_id", "why"),
    [
        ("@cf/meta/../../../user/tokens", "'..'"),
        ("@cf/./x", "'.'"),
        ("@cf//x", "empty"),
        ("@cf/x/", "empty"),
        ("", "empty"),
        ("@cf/x\\u0007", "control character"),
        ("@cf/x\\u001b[31m", "control character"),
        ("@cf/x\\u0085", "control character"),
        ("@cf/x\\u007f", "control character"),
    ],
)
def test_model_ids_that_cannot_name_one_url_path_are_refused(
    isolated_home: Path, model_id: str, why: str
) -> None:
    path = isolated_home / "models.toml"
    path.write_text(f'[models."{model_id}"]\ncontext_window = 10\nmax_output = 5\n')
    with pytest.raises(ConfigError) as caught:
        load_catalog()
    message = str(caught.value)
    assert str(path) in message and why in message
    assert "\x1b" not in message and "\x07" not in message
    assert caught.value.exit_code == 2


def test_ordinary_model_ids_with_at_dots_and_slashes_are_accepted(isolated_home: Path) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."@hf/thebloke/neural-chat-7b-v3.1-awq"]\ncontext_window = 10\nmax_output = 5\n'
    )
    assert load_catalog().get("@hf/thebloke/neural-chat-7b-v3.1-awq").remote


def test_the_built_in_catalog_marks_the_announcement_models_retired_with_a_successor() -> None:
    catalog = load_catalog()
    for model_id in ("@cf/meta/llama-2-7b-chat-int8", "@cf/meta/llama-2-7b-chat-fp16"):
        spec = catalog.get(model_id)
        assert spec.retirement == "2026-05-30" and spec.retired()
        assert catalog.successor_for(spec) == "@cf/meta/llama-3.1-8b-instruct-fp8"
        assert not catalog.get(catalog.successor_for(spec) or "").retired()
    current = [spec for spec in catalog if spec.remote and not spec.retired()]
    assert {"@cf/openai/gpt-oss-120b", "@cf/meta/llama-4-scout-17b-16e-instruct"} <= {s.id for s in current}
    assert catalog.get("@cf/meta/llama-3.2-3b-instruct").total_context == 80000


def test_retirement_capabilities_and_successor_in_the_users_file(isolated_home: Path) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."@cf/acme/mistral-old"]\ncontext_window = 10\nmax_output = 5\nretirement = 2020-01-02\n'
        'capabilities = ["reasoning"]\n'
        '[models."@cf/acme/soon"]\ncontext_window = 10\nmax_output = 5\nretirement = "2999-12-31"\n'
        'successor = "@cf/acme/later"\n'
    )
    catalog = load_catalog()
    old = catalog.get("@cf/acme/mistral-old")
    assert old.retired() and old.retirement == "2020-01-02" and old.capabilities == ("reasoning",)
    # No successor named: the first current Workers AI model whose name starts with the same word.
    assert catalog.successor_for(old) == "@cf/mistralai/mistral-small-3.1-24b-instruct"
    soon = catalog.get("@cf/acme/soon")
    assert not soon.retired() and catalog.successor_for(soon) == "@cf/acme/later"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('retirement = "soon"', "retirement"),
        ("retirement = 2026", "retirement"),
        ('capabilities = "x"', "capabilities"),
    ],
)
def test_a_bad_retirement_or_capabilities_names_the_key(isolated_home: Path, line: str, key: str) -> None:
    (isolated_home / "models.toml").write_text(f'[models."x"]\ncontext_window = 10\nmax_output = 5\n{line}\n')
    with pytest.raises(ConfigError) as caught:
        load_catalog()
    assert f"model 'x', key '{key}'" in str(caught.value)


@pytest.mark.parametrize("value", ["0", "-5", "1" + "0" * 40, "100000001", "4096.5", '"4096"'])
def test_a_window_no_model_has_is_refused_naming_the_key(isolated_home: Path, value: str) -> None:
    (isolated_home / "models.toml").write_text(f'[models."x"]\ncontext_window = {value}\nmax_output = 5\n')
    with pytest.raises(ConfigError) as caught:
        load_catalog()
    assert "model 'x', key 'context_window': must be a whole number of tokens from 1 to 100000000" in str(
        caught.value
    )

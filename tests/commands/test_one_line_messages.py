"""A warning or an error is one line, whatever it quotes: a name, an id or a path holding a line
break (typed, set in the environment, or listed by a server) is shown with the break as its escape,
so nothing after it can pass for a line of wai's own. A server's model whose name holds a control
character is no model wai lists or completes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.openai_server import base_url, openai_server

BREAKS = [pytest.param("\n", "\\x0a", id="newline"), pytest.param("\u2028", "\\u2028", id="U+2028")]


def assert_one_line(stderr: str, shown: str) -> None:
    lines = stderr.splitlines()  # splitlines breaks at U+2028 too
    assert len(lines) == 1, stderr
    assert lines[0].startswith("wai: error: ") and shown in lines[0]


@pytest.mark.parametrize(("brk", "escape"), BREAKS)
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("ask", "--no-stdin", "-m", "odd{}name", "hi"), id="ask -m"),
        pytest.param(("ask", "--no-stdin", "--cid", "odd{}name", "hi"), id="ask --cid"),
        pytest.param(("tokens", "-m", "odd{}name", "hi"), id="tokens -m"),
        pytest.param(("logs", "--cid", "odd{}name"), id="logs --cid"),
        pytest.param(("ask", "--no-stdin", "-m", "/nowhere/odd{}name.gguf", "hi"), id="a .gguf path"),
    ],
)
def test_what_the_user_typed_with_a_line_break_stays_on_the_errors_line(
    isolated_home: Path, args: tuple[str, ...], brk: str, escape: str
) -> None:
    done = run_wai(*(arg.format(brk) for arg in args))
    assert done.returncode == 2
    assert_one_line(done.stderr, f"odd{escape}name")


def test_a_default_model_with_a_line_break_stays_on_the_errors_line(isolated_home: Path) -> None:
    done = run_wai("ask", "--no-stdin", "hi", env={"WAI_MODEL": "odd\nname"})
    assert done.returncode == 2
    assert_one_line(done.stderr, "odd\\x0aname")


BAD_NAMES = ("forged\n  eng:fake  in 999999", "esc\x1b[31mred", "bell\x07")


def test_a_servers_model_named_with_a_control_character_is_not_listed(isolated_home: Path) -> None:
    models = {"org/good": 4096, **dict.fromkeys(BAD_NAMES, 4096)}
    with openai_server("vllm", models=models) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\ntokenizer = "none"\n',
            encoding="utf-8",
        )
        refreshed = run_wai("models", "--refresh")
        missing = run_wai("ask", "--no-stdin", "-m", "eng:nothing-here", "hi")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "read 1 model from eng" in refreshed.stderr
    listed = run_wai("models", "--json")
    served = [m["id"] for m in json.loads(listed.stdout)["provider_models"]]
    assert served == ["eng:org/good"]
    assert "eng:fake" not in run_wai("models").stdout
    # The live list in the error names what it may serve, on the error's one line.
    assert missing.returncode == 2
    assert_one_line(missing.stderr, "it serves (GET /models): org/good")

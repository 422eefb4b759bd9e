"""`wai ask --schema` on a provider's OpenAI-compatible server: the schema goes as
`response_format`, and the reply is still validated before it reaches stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.cli import run_wai
from tests.support.openai_server import base_url, openai_server
from tests.support.workers_ai_server import Reply, openai_chunks

SPEC = "name, age int"


def _ask(isolated_home: Path, answer: list[str], *args: str) -> tuple[Any, list[dict[str, Any]]]:
    reply = Reply.sse(openai_chunks([], answer))
    with openai_server("plain", models={"org/m": 4096}, routes={"POST /v1/chat/completions": reply}) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\ntokenizer = "none"\n',
            encoding="utf-8",
        )
        done = run_wai("ask", "-m", "eng:org/m", *args, "hi")
        bodies = [r.json for r in srv.requests if r.path.endswith("/chat/completions")]
    return done, bodies


def test_the_schema_goes_as_response_format_and_the_reply_as_one_line(isolated_home: Path) -> None:
    done, bodies = _ask(isolated_home, ['{"name": ', '"Ada",\n "age": 36}'], "--schema", SPEC)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"name": "Ada", "age": 36}\n'
    sent = bodies[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["name"] == "reply"
    assert sent["json_schema"]["schema"]["required"] == ["name", "age"]


def test_a_reply_that_breaks_the_schema_is_exit_4_with_nothing_on_stdout(isolated_home: Path) -> None:
    done, _ = _ask(isolated_home, ['{"name": "Ada", "age": "old"}'], "--schema", SPEC)
    assert done.returncode == 4
    assert done.stdout == ""
    assert "wai: error: the reply breaks the schema at /age: 'old' is not of type 'integer' (rule: type)" in (
        done.stderr
    )
    done, _ = _ask(isolated_home, ['{"name": "Ada", "age": "old"}'], "--schema", SPEC, "--json")
    assert done.returncode == 4
    document = json.loads(done.stdout)
    assert document["text"] == '{"name": "Ada", "age": "old"}' and document["parsed"] is None


def test_without_a_schema_no_response_format_is_sent(isolated_home: Path) -> None:
    done, bodies = _ask(isolated_home, ["plain text"])
    assert done.returncode == 0 and done.stdout == "plain text\n"
    assert "response_format" not in bodies[0]

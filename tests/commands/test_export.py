"""`wai logs --export md|json ID`: a conversation as it stands, with model, times, usage and cost,
for sharing; control characters never written raw."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_wai
from tests.support.workers_ai_server import Reply, WorkersAIServer, price_listing, search_result

PRICED = "@cf/meta/llama-3.1-8b-instruct-fp8"
HOSTILE = "look \x1b]52;c;cGF5bG9hZA==\x07here \u202eevil\x85 done"


@pytest.fixture
def conversation(server: WorkersAIServer) -> str:
    server.simulation.catalog = [search_result(PRICED, window=32000, price=price_listing(0.3, 2.0))]
    assert run_wai("models", "--refresh").returncode == 0
    server.script(Reply.sse([{"response": HOSTILE}]), Reply.sse([{"response": "second reply"}]))
    assert run_wai("ask", "-m", PRICED, "-s", "be brief", "first \x1b[2J question").returncode == 0
    assert run_wai("ask", "-c", "second question").returncode == 0
    listed = json.loads(run_wai("logs", "--json").stdout)
    return str(listed[0]["id"])


def test_markdown_export_has_the_turns_their_facts_and_no_raw_controls(conversation: str) -> None:
    done = run_wai("logs", "--export", "md", conversation[:12])
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"# Conversation {conversation}")
    assert "## System" in text and "be brief" in text
    assert "## You" in text and "second question" in text and "second reply" in text
    assert f"## {PRICED}" in text and " in · " in text and "$" in text
    for raw in ("\x1b", "\x07", "\u202e", "\x85"):
        assert raw not in text
    assert "\\x1b]52;c;cGF5bG9hZA==\\x07here \\u202eevil\\x85 done" in text  # shown, not lost


def test_json_export_keeps_the_exact_text_escaped(conversation: str) -> None:
    done = run_wai("logs", "--export", "json", "--cid", conversation)
    assert done.returncode == 0, done.stderr
    for raw in ("\x1b", "\x07", "\u202e", "\x85"):
        assert raw not in done.stdout
    document = json.loads(done.stdout)
    first, second = document["turns"]
    assert first["reply"] == HOSTILE  # the same data, once parsed
    assert first["system"] == "be brief" and first["model"] == PRICED
    assert first["cost"]["usd"] > 0 and first["usage"]["prompt_tokens"] > 0
    assert document["total"]["turns"] == 2
    assert document["total"]["usd"] == pytest.approx(first["cost"]["usd"] + second["cost"]["usd"])


def test_export_refuses_what_it_cannot_write(conversation: str) -> None:
    assert run_wai("logs", "--export", "pdf", conversation).returncode == 2
    missing = run_wai("logs", "--export", "md")
    assert missing.returncode == 2 and "--export needs" in missing.stderr
    unknown = run_wai("logs", "--export", "md", "zzzz")
    assert unknown.returncode == 2 and "no conversation" in unknown.stderr
    # The ID alone shows the conversation, as --cid does.
    assert "second question" in run_wai("logs", conversation).stdout


@pytest.mark.parametrize("fmt", ["md", "json"])
def test_no_export_writes_a_line_or_paragraph_separator_raw(server: WorkersAIServer, fmt: str) -> None:
    # U+2028 and U+2029 end a line in many viewers and editors: Markdown showed them as escapes,
    # JSON wrote them raw (valid JSON, but a line break where the text has none).
    said = "one\u2028two\u2029three"
    server.script(Reply.sse([{"response": f"re {said}"}]))
    assert run_wai("ask", "-m", PRICED, f"ask {said}").returncode == 0
    cid = str(json.loads(run_wai("logs", "--json").stdout)[0]["id"])
    done = run_wai("logs", "--export", fmt, cid)
    assert done.returncode == 0, done.stderr
    assert "\u2028" not in done.stdout and "\u2029" not in done.stdout
    if fmt == "json":
        (turn,) = json.loads(done.stdout)["turns"]
        assert (turn["prompt"], turn["reply"]) == (f"ask {said}", f"re {said}")
    else:
        assert "ask one\\u2028two\\u2029three" in done.stdout

"""What wai says when a reply fails, through the installed `wai`: grammatical whatever the count,
true to where the error came from, and never a provider header's value."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.support.cli import run_wai
from tests.support.openai_server import base_url, openai_server
from tests.support.workers_ai_server import Reply, Simulation, WorkersAIServer, openai_chunks

MODEL = "@cf/meta/llama-3.1-8b-instruct-fp8"


@pytest.fixture
def server() -> Iterator[WorkersAIServer]:
    with WorkersAIServer(Simulation()) as running:
        yield running


def env_for(server: WorkersAIServer) -> dict[str, str]:
    return server.client_env("tok-wording-0123")


@pytest.mark.parametrize(("text", "count"), [("P", "1 character"), ("Pq", "2 characters")])
def test_an_error_event_after_some_text_says_how_much_came_first(
    server: WorkersAIServer, text: str, count: str
) -> None:
    server.script(Reply.sse([{"response": text}, {"errors": [{"code": 3043, "message": "Internal error"}]}]))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 1 and done.stdout == f"{text}\n"
    # The count belongs to the reply, not to the server's advice ("try again later after 2 characters").
    assert (
        f"the reply is incomplete after {count}: Workers AI failed on its side (code 3043: Internal error); "
        "try again later (what arrived is kept)"
    ) in done.stderr
    assert "HTTP 200" not in done.stderr


def test_an_error_event_before_any_text_is_no_refusal_with_a_200(server: WorkersAIServer) -> None:
    server.script(Reply.sse([{"errors": [{"code": 9999, "message": "bad thing"}]}]))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 1
    assert "Workers AI ended the reply with an error (code 9999: bad thing)" in done.stderr
    assert "refused" not in done.stderr and "HTTP 200" not in done.stderr


def test_a_stream_broken_after_one_thought_is_singular(server: WorkersAIServer) -> None:
    server.script(Reply.sse(openai_chunks(["x"], [], finish=None), done=False, end="drop"))
    done = run_wai("ask", "-m", MODEL, "hi", env=env_for(server))
    assert done.returncode == 1
    assert "incomplete after 1 character of thinking:" in done.stderr


def test_a_one_token_cap_is_one_token(server: WorkersAIServer) -> None:
    server.script(Reply.sse([{"response": "Yes"}]))
    done = run_wai("ask", "-m", MODEL, "--max-tokens", "1", "hi", env=env_for(server))
    assert done.returncode == 0, done.stderr
    assert "the reply stopped at the output cap (1 token);" in done.stderr


def test_a_providers_header_values_never_reach_an_error(isolated_home: Path) -> None:
    secret = "hdr-SECRET-7a6b5c4d"
    echoing = Reply.openai_error(400, f"header X-Team-Key={secret} is not allowed here")
    with openai_server("plain", models={"org/m": 4096}, routes={"POST /v1/chat/completions": echoing}) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\ntokenizer = "none"\n'
            f'headers = {{ "X-Team-Key" = "{secret}" }}\n',
            encoding="utf-8",
        )
        done = run_wai("ask", "--debug", "--json", "-m", "eng:org/m", "hi")
        assert srv.requests[-1].headers["x-team-key"] == secret  # it was sent
    assert done.returncode == 1
    assert "X-Team-Key=*** is not allowed here" in done.stderr
    assert secret not in done.stdout + done.stderr


@pytest.mark.parametrize("window", [1, 2])
def test_a_window_of_one_token_is_one_token(isolated_home: Path, window: int) -> None:
    # A models.toml may give a window of a single token; the refusal is still grammatical.
    with openai_server("plain", models={"org/m": 4096}) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\ntokenizer = "none"\n',
            encoding="utf-8",
        )
        (isolated_home / "models.toml").write_text(
            f'[models."eng:org/m"]\ncontext_window = {window}\nmax_output = 1\ntotal_context = 4096\n',
            encoding="utf-8",
        )
        done = run_wai("ask", "-m", "eng:org/m", "hello there")
    assert done.returncode == 3
    noun = "input token" if window == 1 else "input tokens"
    assert f"eng:org/m accepts at most {window} {noun} (" in done.stderr


def test_a_count_without_a_vocabulary_says_why_in_words(isolated_home: Path) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."@cf/acme/plain-7b"]\ncontext_window = 4096\nmax_output = 512\n'
        '[models."@cf/acme/odd-7b"]\ncontext_window = 4096\nmax_output = 512\nfamily = "gemma"\n',
        encoding="utf-8",
    )
    plain = run_wai("tokens", "-m", "@cf/acme/plain-7b", "hi")
    odd = run_wai("tokens", "-m", "@cf/acme/odd-7b", "hi")
    assert "estimate (wai knows no vocabulary for this model)" in plain.stdout  # not "family unset"
    assert "estimate (wai has no vocabulary of the gemma family)" in odd.stdout


@pytest.mark.parametrize("echo", ["percent-encoded", "form-encoded", "JSON-escaped"])
def test_a_key_or_header_value_echoed_encoded_is_scrubbed_too(isolated_home: Path, echo: str) -> None:
    key, header = 'sk-Key+/=with"odd chars', 'team value+/="x'
    encodings: dict[str, Callable[[str], str]] = {
        "percent-encoded": lambda s: quote(s, safe=""),
        "form-encoded": lambda s: quote_plus(s),
        "JSON-escaped": lambda s: json.dumps(s)[1:-1],
    }
    encode = encodings[echo]
    echoing = Reply.openai_error(400, f"bad auth {encode(key)} and header {encode(header)}")
    with openai_server("plain", models={"org/m": 4096}, routes={"POST /v1/chat/completions": echoing}) as srv:
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(srv)}"\ntokenizer = "none"\n'
            f'api_key_env = "ENG_KEY"\nheaders = {{ "X-Team" = {json.dumps(header)} }}\n',
            encoding="utf-8",
        )
        done = run_wai("ask", "--debug", "--json", "-m", "eng:org/m", "hi", env={"ENG_KEY": key})
    assert done.returncode == 1
    assert "bad auth *** and header ***" in done.stderr
    for secret in (key, header):
        assert encode(secret) not in done.stdout + done.stderr

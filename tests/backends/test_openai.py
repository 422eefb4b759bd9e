"""The OpenAI-compatible backend through the installed `wai`, against loopback servers that speak
as vLLM and as llama-server do (tests/support/openai_server.py): each counts every chat body it
receives with its own tokenizer and records any request over its context."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.render.terminal import environment, finish
from tests.support import pty_spawn
from tests.support.cli import WAI, run_wai
from tests.support.openai_server import (
    Engine,
    OpenAISimulation,
    apply_template,
    base_url,
    count_messages,
    openai_server,
    trickle,
)
from tests.support.transport import intercepted, timing_out
from tests.support.workers_ai_server import Reply, WorkersAIServer, openai_chunks, usage_dict

MODEL = "org/model-a"
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def configure(home: Path, server: WorkersAIServer, *, name: str = "eng", extra: str = "") -> None:
    (home / "config.toml").write_text(
        f'[providers.{name}]\ntype = "openai"\nbase_url = "{base_url(server)}"\n{extra}', encoding="utf-8"
    )


def chat_requests(server: WorkersAIServer) -> list[Any]:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


@pytest.fixture(params=["vllm", "llama-server"])
def engine(request: pytest.FixtureRequest, isolated_home: Path) -> Iterator[WorkersAIServer]:
    engine_name: Engine = request.param
    with openai_server(engine_name, models={MODEL: 64}) as server:
        configure(isolated_home, server)
        yield server
    assert server.violations == []  # no request over the server's own context, ever
    assert server.errors == []


@pytest.fixture
def plain(isolated_home: Path) -> Iterator[WorkersAIServer]:
    """A server without a tokenizer, the model's windows set by hand: the chat request is the only
    request, so a test can script its reply."""
    with openai_server("plain", models={MODEL: 4096}) as server:
        configure(isolated_home, server, extra='tokenizer = "none"\n')
        (isolated_home / "models.toml").write_text(
            f'[models."eng:{MODEL}"]\ncontext_window = 4096\nmax_output = 512\n', encoding="utf-8"
        )
        yield server
    assert server.violations == []


def prompt_of(tokens: int) -> str:
    """A prompt that the servers' tokenizer counts as `tokens` once templated (4 for the markers and BOS)."""
    words = [WORDS[i % len(WORDS)] for i in range(tokens - 4)]
    text = " ".join(words)
    assert count_messages([{"role": "user", "content": text}]) == tokens
    return text


def test_pipe_gets_the_exact_text_counted_by_the_server(engine: WorkersAIServer) -> None:
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hello there")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "token1 token2 token3 token4 token5 token6 token7 token8\n"
    [chat] = chat_requests(engine)
    body = chat.json
    assert body["model"] == MODEL and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    # max_tokens always sent: what the 64-token context leaves after the 6-token prompt, at most out.
    assert body["max_tokens"] == 32
    paths = [r.path for r in engine.requests]
    assert paths.index("/tokenize") < paths.index("/v1/chat/completions")  # counted before sending


def test_tokens_shows_the_servers_count_and_where_it_came_from(engine: WorkersAIServer) -> None:
    run = run_wai("tokens", "-m", f"eng:{MODEL}", "--json", "hello there")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["tokens"] == count_messages([{"role": "user", "content": "hello there"}])
    assert report["exact"] is True
    assert "eng's own tokenizer (POST " in report["counted_with"]
    assert report["total_context"] == 64
    words = run_wai("tokens", "-m", f"eng:{MODEL}", "hello there")
    assert "6 tokens (the prompt as sent; exact; eng's own tokenizer (POST /" in words.stdout
    assert f"fits eng:{MODEL}'s input limit of 48 (64-token context less room for a reply)" in words.stdout


def test_a_prompt_at_the_limit_is_sent_and_one_token_more_is_refused_with_nothing_sent(
    engine: WorkersAIServer,
) -> None:
    # 64 tokens of context, at least 16 for the reply: 48 prompt tokens at most.
    at_limit = run_wai("ask", "-m", f"eng:{MODEL}", prompt_of(48))
    assert at_limit.returncode == 0, at_limit.stderr
    [chat] = chat_requests(engine)
    assert chat.json["max_tokens"] == 16
    over = run_wai("ask", "-m", f"eng:{MODEL}", prompt_of(49))
    assert over.returncode == 3
    assert "the prompt is 49 tokens, which leaves room for only 15 reply tokens" in over.stderr
    assert "~" not in over.stderr  # an exact count
    assert len(chat_requests(engine)) == 1  # nothing more was sent


def test_dry_run_shows_the_servers_count_and_sends_no_chat(engine: WorkersAIServer) -> None:
    run = run_wai("ask", "--dry-run", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["backend"] == "openai" and report["exact"] is True
    assert report["prompt_tokens"] == count_messages([{"role": "user", "content": "hi"}])
    assert chat_requests(engine) == []


def test_llama_server_dry_run_shows_the_templated_prompt(isolated_home: Path) -> None:
    with openai_server("llama-server", models={MODEL: 64}) as server:
        configure(isolated_home, server)
        report = json.loads(run_wai("ask", "--dry-run", "-m", f"eng:{MODEL}", "hi").stdout)
    assert report["prompt"] == apply_template([{"role": "user", "content": "hi"}])


def test_a_refresh_keeps_each_providers_models_and_windows(
    engine: WorkersAIServer, isolated_home: Path
) -> None:
    run = run_wai("models", "--refresh")
    assert run.returncode == 0, run.stderr
    assert "read 1 model from eng" in run.stderr
    assert f"eng:{MODEL}  in 64  out 32  total 64" in run.stdout
    engine.forget()
    asked = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert asked.returncode == 0
    # The windows are known now: no GET /models, /props before the count.
    assert [r.path for r in engine.requests if r.method == "GET"] == []


def test_a_refresh_leaves_out_each_model_a_server_lists_with_absurd_windows(isolated_home: Path) -> None:
    listing = Reply.json(
        {
            "object": "list",
            "data": [
                {"id": MODEL, "max_model_len": 64},
                {"id": "org/huge", "max_model_len": 10**40},
                {"id": "org/negative", "max_model_len": -64},
                {"id": "org/wordy", "max_model_len": "lots"},
                {"id": "org/outgrown", "context_window": 64, "max_output": 100, "total_context": 64},
            ],
        }
    )
    with openai_server("vllm", models={MODEL: 64}, routes={"GET /v1/models": listing}) as server:
        configure(isolated_home, server)
        run = run_wai("models", "--refresh")
        assert run.returncode == 0, run.stderr
        assert "read 1 model from eng" in run.stderr
        for model in ("org/huge", "org/negative", "org/wordy", "org/outgrown"):
            assert f"wai: warning: eng:{model}: eng lists it with a " in run.stderr, model
        assert "a max_model_len of " + "1" + "0" * 40 in run.stderr
        assert "a max_output of 100, more than its whole window of 64" in run.stderr
        assert f"eng:{MODEL}  in 64" in run.stdout and "org/huge" not in run.stdout
        # Asked for at first use, the same listing is a one-line error, nothing sent.
        asked = run_wai("ask", "-m", "eng:org/outgrown", "hi")
    assert asked.returncode == 2, asked.stderr
    assert "eng lists org/outgrown with a max_output of 100, more than its whole window" in asked.stderr
    assert chat_requests(server) == []


def test_a_system_prompt_and_sampling_options_are_sent_under_openais_names(plain: WorkersAIServer) -> None:
    run = run_wai(
        "ask", "-m", f"eng:{MODEL}", "-s", "be brief", "--temperature", "0.2", "--top-p", "0.5",
        "--seed", "7", "--max-tokens", "20", "hi",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    body = chat_requests(plain)[0].json
    assert body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert (body["temperature"], body["top_p"], body["seed"], body["max_tokens"]) == (0.2, 0.5, 7, 20)
    assert "~" in run_wai("tokens", "-m", f"eng:{MODEL}", "hi").stdout  # no tokenizer: an estimate


def test_a_refused_key_names_the_variable_that_holds_it(isolated_home: Path) -> None:
    with openai_server("vllm", models={MODEL: 64}, api_key="right-key") as server:
        configure(isolated_home, server, extra='api_key_env = "ENG_KEY"\n')
        wrong = run_wai("ask", "-m", f"eng:{MODEL}", "hi", env={"ENG_KEY": "wrong-key"})
        unset = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
        right = run_wai("ask", "-m", f"eng:{MODEL}", "hi", env={"ENG_KEY": "right-key"})
    assert wrong.returncode == 2
    assert "eng refused the API key (HTTP 401: Invalid API key); check ENG_KEY" in wrong.stderr
    assert "wrong-key" not in wrong.stderr
    assert unset.returncode == 2 and "ENG_KEY is not set" in unset.stderr
    assert right.returncode == 0 and right.stdout.startswith("token1")


def test_a_key_refused_by_the_chat_route_names_the_variable(plain: WorkersAIServer) -> None:
    plain.script(Reply.openai_error(403, "forbidden for this key"))
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 2
    assert "eng refused the API key (HTTP 403: forbidden for this key); no key is sent: set api_key_env" in (
        run.stderr
    )


def test_an_unknown_model_lists_what_get_models_offers(engine: WorkersAIServer, isolated_home: Path) -> None:
    run = run_wai("ask", "-m", "eng:no-such-model", "hi")
    assert run.returncode == 2
    assert "eng does not serve the model 'no-such-model'" in run.stderr
    assert f"it serves (GET /models): {MODEL}" in run.stderr
    assert chat_requests(engine) == []


def test_a_404_from_the_chat_route_lists_what_get_models_offers(
    plain: WorkersAIServer, isolated_home: Path
) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."eng:other"]\ncontext_window = 4096\nmax_output = 512\n', encoding="utf-8"
    )
    plain.script(Reply.openai_error(404, "The model `other` does not exist."))
    run = run_wai("ask", "-m", "eng:other", "hi")
    assert run.returncode == 2
    assert "eng does not serve the model 'other' (HTTP 404: The model `other` does not exist.)" in run.stderr
    assert f"it serves (GET /models): {MODEL}" in run.stderr


def test_a_404_for_a_model_the_server_lists_says_so(plain: WorkersAIServer) -> None:
    plain.script(Reply.openai_error(404, "Not Found"))
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 2
    assert (
        f"eng refused the model '{MODEL}' (HTTP 404: Not Found) although GET /models lists it" in run.stderr
    )


def test_a_base_url_whose_models_and_chat_routes_are_missing_is_said_to_look_wrong(
    isolated_home: Path,
) -> None:
    missing = Reply.json({"detail": "Not Found"}, status=404)
    routes = {"GET /v1/models": missing, "POST /v1/chat/completions": missing}
    with _served(isolated_home, "plain", routes, extra='tokenizer = "none"\n') as server:
        run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 2
    assert (
        f"eng answered 404 to the chat request (HTTP 404) and to GET /models: its base_url "
        f"{base_url(server)} looks wrong; it should end at the /v1 of an OpenAI-compatible server"
        in run.stderr
    )


def test_a_context_length_complaint_is_a_window_error_with_its_numbers(plain: WorkersAIServer) -> None:
    plain.script(
        Reply.openai_error(
            400,
            "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens "
            "(1800 in the messages, 300 in the completion).",
        )
    )
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 3
    assert "maximum context length is 2048 tokens" in run.stderr and "2100 tokens" in run.stderr
    assert len(chat_requests(plain)) == 1  # not retried


def test_wai_serves_window_refusal_is_a_window_error(plain: WorkersAIServer) -> None:
    # wai serve refuses as Workers AI does: 413, code 5021, whichever route was asked.
    said = "Input too long: the prompt is 6231 tokens; m accepts at most 6144 input tokens"
    plain.script(Reply.error(413, 5021, said))
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 3, run.stderr
    assert "6231 tokens" in run.stderr
    assert len(chat_requests(plain)) == 1  # not retried


def test_llama_servers_context_complaint_carries_its_figures(plain: WorkersAIServer) -> None:
    plain.script(
        Reply.json(
            {
                "error": {
                    "code": 400,
                    "message": "the request exceeds the available context size, try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 5000,
                    "n_ctx": 4096,
                }
            },
            status=400,
        )
    )
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 3
    assert "the prompt is 5000 tokens, the context 4096" in run.stderr


def test_429_and_5xx_are_retried_honouring_retry_after(plain: WorkersAIServer) -> None:
    plain.script(
        Reply.openai_error(429, "slow down")
        if False
        else Reply.json({"error": {"message": "rate limited"}}, status=429, headers={"Retry-After": "1"}),
        Reply.openai_error(503, "loading"),
    )
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi", "--debug")
    assert run.returncode == 0, run.stderr
    assert "cf-ray" not in run.stderr  # Cloudflare's field, not a provider's
    assert run.stdout.startswith("token1")
    assert len(chat_requests(plain)) == 3
    assert "retry 1/3 in 1.00 s" in run.stderr  # no sooner than the server asked


def test_a_stream_dropped_after_the_first_token_keeps_what_arrived_and_is_not_retried(
    plain: WorkersAIServer,
) -> None:
    plain.script(Reply.sse(openai_chunks(answer=["Hello", " world"], finish=None), done=False, end="drop"))
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 1
    assert run.stdout == "Hello world\n"
    assert "incomplete" in run.stderr
    assert len(chat_requests(plain)) == 1


def test_usage_on_the_last_chunk_is_exact_and_none_is_an_estimate(plain: WorkersAIServer) -> None:
    plain.script(Reply.sse(openai_chunks(answer=["a", "b", "c"], usage=usage_dict(11, 3))))
    with_usage = json.loads(run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi").stdout)
    assert with_usage["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 3,
        "reasoning_tokens": None,
        "cached_tokens": None,
        "exact": True,
        "prompt_exact": True,
    }
    plain.script(Reply.sse(openai_chunks(answer=["a", "b", "c"])))
    without = json.loads(run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi").stdout)
    assert without["text"] == "abc" and without["usage"]["exact"] is False
    assert without["usage"]["prompt_exact"] is False  # tokenizer = "none": the prompt was estimated


def test_a_stream_without_done_is_whole_after_its_finish_reason(plain: WorkersAIServer) -> None:
    plain.script(Reply.sse(openai_chunks(answer=["whole", " reply"]), done=False))
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "whole reply\n"


def test_a_tool_call_is_told_in_a_notice(plain: WorkersAIServer) -> None:
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    head = {"object": "chat.completion.chunk"}
    plain.script(
        Reply.sse(
            [
                {**head, "choices": [{"index": 0, "delta": {"content": "Let me check."}}]},
                {**head, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
                {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            ]
        )
    )
    run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "Let me check.\n"
    assert "the model answered with a tool call, which wai does not run or show" in run.stderr


def test_thinking_arrives_apart_from_the_answer(plain: WorkersAIServer) -> None:
    plain.script(Reply.sse(openai_chunks(["hmm"], ["yes"], key="reasoning")))
    result = json.loads(run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi").stdout)
    assert (result["reasoning"], result["text"]) == ("hmm", "yes")


def test_raw_prompts_are_refused_before_sending(plain: WorkersAIServer) -> None:
    run = run_wai("ask", "--raw", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 2 and "--raw cannot go to a provider's model" in run.stderr
    assert chat_requests(plain) == []


@pytest.mark.e2e
def test_ctrl_c_keeps_what_arrived_and_exits_130(plain: WorkersAIServer) -> None:
    gate = threading.Event()
    plain.script(Reply.gated(openai_chunks(answer=["partial", " answer"], finish=None)[:3], gate, []))
    process = subprocess.Popen(
        [WAI, "ask", "-m", f"eng:{MODEL}", "hi"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    seen = process.stdout.read(len("partial answer"))
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    gate.set()
    assert seen + out == b"partial answer\n"
    assert process.returncode == 130
    assert b"interrupted" in err and b"Traceback" not in err


@pytest.mark.e2e
def test_the_panel_on_a_terminal_shows_the_exact_text(engine: WorkersAIServer) -> None:
    child = pty_spawn.spawn(
        WAI,
        ["ask", "-m", f"eng:{MODEL}", "hello"],
        env=environment({"WAI_HOME": os.environ["WAI_HOME"]}),
        dimensions=(24, 80),
        encoding="utf-8",
        timeout=30,
    )
    run = finish(child, 24, 80)
    assert run.exit_status == 0, run.lines
    text = "\n".join(run.lines)
    assert "token1 token2 token3 token4 token5 token6 token7 token8" in text
    assert f"eng:{MODEL} · eng" in run.lines[0]  # the provider's name, not the API's
    assert "in 5/64" in text and "out 8/32" in text  # the server's counts against its context
    assert "OpenAI API" not in text


@pytest.mark.e2e
def test_chat_completes_provider_models_and_counts_each_conversation_once(
    engine: WorkersAIServer, isolated_home: Path
) -> None:
    from tests.support.chat_terminal import expect_prompt, leave, spawn_chat

    assert run_wai("models", "--refresh").returncode == 0
    child = spawn_chat("-m", f"eng:{MODEL}", "--no-log")
    expect_prompt(child, "model-a")
    child.send("/model eng:org\t")
    child.expect(f"eng:{MODEL}")
    child.send("\x15")  # clear the line
    child.send("hi\r")
    child.expect("token8")
    used = expect_prompt(child, "model-a")
    assert leave(child) == 0
    assert used > 0
    tokenize_bodies = [r.json for r in engine.requests if r.path in ("/tokenize", "/apply-template")]
    counted = [json.dumps(b.get("messages"), sort_keys=True) for b in tokenize_bodies if b.get("messages")]
    assert len(counted) == len(set(counted))  # the same messages are never counted twice


def test_an_id_with_a_colon_is_a_catalog_id_unless_a_provider_has_that_name(isolated_home: Path) -> None:
    (isolated_home / "models.toml").write_text(
        '[models."team:model"]\ncontext_window = 100\nmax_output = 20\ngguf = "x.gguf"\n', encoding="utf-8"
    )
    report = json.loads(run_wai("ask", "--dry-run", "-m", "team:model", "hi").stdout)
    assert report["backend"] == "local" and report["model"] == "team:model"


def test_openai_base_url_defines_the_openai_provider(isolated_home: Path) -> None:
    with openai_server("vllm", models={MODEL: 64}) as server:
        run = run_wai("ask", "-m", f"openai:{MODEL}", "hi", env={"OPENAI_BASE_URL": base_url(server)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("token1")


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('base_url = "ftp://x/v1"', "key 'base_url': 'ftp://x/v1' is not an http(s) URL"),
        ('base_url = "http://x/v1"\napi_key = "sk-1"', "key 'api_key': the key itself is never written"),
        ('base_url = "http://x/v1"\ncolour = 1', "key 'colour': unknown key"),
        ('base_url = "http://x/v1"\ntimeout = -1', "key 'timeout': must be a number of seconds"),
        ('base_url = "http://x/v1"\ntokenizer = "tiktoken"', "key 'tokenizer': must be one of"),
        ('base_url = "http://x/v1"\nheaders = { Authorization = "x" }', "key 'headers': Authorization"),
        ('base_url = "http://x/v1"\napi_key_env = "MY KEY"', "key 'api_key_env': must be the name"),
        (
            'base_url = "http://127.0.0.1:99999/v1"',
            "key 'base_url': 'http://127.0.0.1:99999/v1' has no usable port",
        ),
        (
            'base_url = "http://127.0.0.1:abc/v1"',
            "key 'base_url': 'http://127.0.0.1:abc/v1' has no usable port",
        ),
        ('base_url = "http://127.0.0.1 /v1"', "key 'base_url': 'http://127.0.0.1 /v1' holds a space"),
        ('base_url = "http://exa mple.com/v1"', "key 'base_url': 'http://exa mple.com/v1' holds a space"),
        (
            'base_url = "http://exa$mple.com/v1"',
            "key 'base_url': 'http://exa$mple.com/v1' has no usable host",
        ),
        (
            'base_url = "http://x/v1"\nheaders = { "Content-Length" = "5" }',
            "key 'headers': 'Content-Length' is set",
        ),
        (
            'base_url = "http://x/v1"\nheaders = { "transfer-encoding" = "x" }',
            "key 'headers': 'transfer-encoding'",
        ),
        ('base_url = "http://x/v1"\nheaders = { Host = "evil" }', "key 'headers': 'Host' is set by wai"),
        (
            'base_url = "http://x/v1"\nheaders = { Connection = "close" }',
            "key 'headers': 'Connection' is set",
        ),
        (
            'base_url = "http://x/v1"\ntimeout = 1e10',
            "key 'timeout': must be a number of seconds from 0.1 to 86400",
        ),
        ('base_url = "http://x/v1"\ntimeout = 1e300', "key 'timeout': must be a number of seconds"),
        ('base_url = "http://x/v1"\ntimeout = 1e-300', "key 'timeout': must be a number of seconds"),
        ('base_url = "http://x/v1"\ntimeout = nan', "key 'timeout': must be a number of seconds"),
        ('base_url = "http://x/v1"\ntimeout = inf', "key 'timeout': must be a number of seconds"),
    ],
)
def test_each_bad_provider_value_is_one_line_naming_the_file_table_and_key(
    isolated_home: Path, table: str, said: str
) -> None:
    (isolated_home / "config.toml").write_text(
        f'[providers.eng]\ntype = "openai"\n{table}\n', encoding="utf-8"
    )
    run = run_wai("ask", "-m", "eng:m", "hi")
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1, run.stderr
    assert f"{isolated_home / 'config.toml'}: [providers.eng] {said}" in run.stderr
    assert "sk-1" not in run.stderr


def _served(isolated_home: Path, engine: Engine, routes: dict[str, Any], extra: str = "") -> WorkersAIServer:
    server = openai_server(engine, models={MODEL: 64 if engine == "vllm" else 4096}, routes=routes)
    configure(isolated_home, server, extra=extra)
    return server


@pytest.mark.parametrize("command", [("tokens",), ("ask", "--dry-run")])
def test_a_count_or_a_dry_run_says_the_window_is_assumed(
    isolated_home: Path, command: tuple[str, ...]
) -> None:
    with _served(isolated_home, "plain", {}) as server:
        run = run_wai(*command, "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 0, run.stderr
    assert f"eng tells no context length for {MODEL}: assumed 4096 tokens" in run.stderr
    assert f'[models."eng:{MODEL}"] in {isolated_home / "models.toml"}' in run.stderr  # the file it reads
    assert chat_requests(server) == []


def test_a_tokenizer_trickling_its_answer_is_given_up_at_the_providers_timeout(isolated_home: Path) -> None:
    server = openai_server("vllm", models={MODEL: 64}, routes={"POST /tokenize": trickle(60)})
    with server:
        configure(isolated_home, server, extra='timeout = 2\ntokenizer = "vllm"\n')
        run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
        given = run_wai("ask", "-m", f"eng:{MODEL}", "--read-timeout", "1", "hi")
    assert run.returncode == 1
    assert (
        "eng could not count the prompt: eng did not answer POST /tokenize within 2 s "
        f"(timeout in [providers.eng] of {isolated_home / 'config.toml'})" in run.stderr
    )
    assert 'tokenizer = "none" in [providers.eng]' in run.stderr
    assert "did not answer POST /tokenize within 1 s (--read-timeout)" in given.stderr
    assert chat_requests(server) == []


def test_a_tokenizer_that_never_answers_is_given_up_at_the_default_and_estimated(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The silence is the transport's: its 10 s read timeout passes at once (the trickling test
    # above waits out real ones).
    hang = Reply(headers={"Content-Type": "application/json"}, end="hang")
    waited: list[float] = []
    intercepted(monkeypatch, timing_out("POST /tokenize", waited))
    with _served(isolated_home, "vllm", {"POST /tokenize": hang}) as server:
        run = run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 0, run.stderr
    assert waited == [10.0]
    said = (
        "eng did not answer POST /tokenize within 10 s (wai's default for small requests; set "
        f"timeout = SECONDS in [providers.eng] of {isolated_home / 'config.toml'} to wait longer); "
        "counted by estimate (~) instead"
    )
    assert said in run.stderr
    assert any(said in warning for warning in json.loads(run.stdout)["warnings"])
    assert len(chat_requests(server)) == 1


BAD_COUNTS = {
    "HTTP 500": Reply.openai_error(500, "tokenizer exploded"),
    "HTML": Reply.text(200, "<html><body>nginx</body></html>"),
    "a word": Reply.json({"count": "lots", "tokens": "x"}),
    "true": Reply.json(True),
    "a negative count": Reply.json({"count": -5, "max_model_len": 64}),
    "a boolean count": Reply.json({"count": True, "max_model_len": 64}),
}


@pytest.mark.parametrize("answer", BAD_COUNTS)
def test_a_tokenizer_answering_badly_is_estimated_in_auto_mode_and_an_error_when_named(
    isolated_home: Path, answer: str
) -> None:
    with _served(isolated_home, "vllm", {"POST /tokenize": BAD_COUNTS[answer]}) as server:
        auto = run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi")
        tokens = run_wai("tokens", "--json", "-m", f"eng:{MODEL}", "hi")
        configure(isolated_home, server, extra='tokenizer = "vllm"\n')
        named = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert auto.returncode == 0, auto.stderr
    assert auto.stderr.count("eng could not count the prompt") == 1
    assert "counted by estimate (~) instead" in auto.stderr
    assert json.loads(auto.stdout)["usage"]["prompt_tokens"] > 0
    report = json.loads(tokens.stdout)
    assert report["exact"] is False and report["display"].startswith("~") and report["tokens"] > 0
    assert named.returncode == 1
    assert "eng could not count the prompt (POST /tokenize: " in named.stderr
    assert 'tokenizer = "none" in [providers.eng]' in named.stderr
    assert len(chat_requests(server)) == 1  # the auto run's alone


def test_a_gateway_refusing_the_probes_routes_is_no_tokenizer_and_no_key_error(isolated_home: Path) -> None:
    forbidden = Reply.openai_error(403, "Forbidden: route not allowed")
    routes = {"POST /tokenize": forbidden, "GET /props": forbidden, "POST /api/show": forbidden}
    with _served(isolated_home, "plain", routes) as server:
        run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 0, run.stderr
    assert "refused the API key" not in run.stderr
    assert "eng tells no context length for org/model-a: assumed 4096 tokens" in run.stderr
    assert len(chat_requests(server)) == 1


@pytest.mark.parametrize("status", [404, 403])
@pytest.mark.parametrize(
    ("engine", "route"), [("vllm", "POST /tokenize"), ("llama-server", "POST /apply-template")]
)
def test_a_gateway_hiding_the_count_route_of_a_known_engine_is_no_tokenizer_without_a_warning(
    isolated_home: Path, engine: Engine, route: str, status: int
) -> None:
    # The listing (vLLM's max_model_len) or /props (llama-server's n_ctx) names the engine; the
    # gateway in front of it lets only the API through. That is no tokenizer, as for an engine
    # unknown: every turn counted by estimate, without a warning that it "could not count".
    with _served(isolated_home, engine, {route: Reply.openai_error(status, "route not allowed")}) as server:
        first = run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi")
        again = run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi again")
        tokens = run_wai("tokens", "--json", "-m", f"eng:{MODEL}", "hi")
    for run in (first, again):
        assert run.returncode == 0, run.stderr
        assert "could not count" not in run.stderr
        assert json.loads(run.stdout)["warnings"] == []
    report = json.loads(tokens.stdout)
    assert report["exact"] is False and f"HTTP {status}" in report["counted_with"]
    assert len(chat_requests(server)) == 2


def test_a_key_refused_by_get_models_stops_everything_at_once(isolated_home: Path) -> None:
    with _served(isolated_home, "plain", {"GET /v1/models": Reply.openai_error(401, "bad key")}) as server:
        run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 2
    assert run.stderr == "wai: error: eng refused the API key (HTTP 401: bad key); no key is sent: set " + (
        f"api_key_env in [providers.eng] of {isolated_home / 'config.toml'}\n"
    )
    assert [r.path for r in server.requests] == ["/v1/models"]


def test_a_server_that_tells_a_smaller_context_than_the_stored_one_is_planned_by_its_figure(
    isolated_home: Path,
) -> None:
    with openai_server("vllm", models={MODEL: 200}) as server:
        configure(isolated_home, server)
        assert run_wai("models", "--refresh").returncode == 0
        simulation = server.simulation
        assert isinstance(simulation, OpenAISimulation)
        simulation.models = {MODEL: 100}  # restarted with a smaller context
        asked = run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi")
        tokens = run_wai("tokens", "--json", "-m", f"eng:{MODEL}", "hi")
        (isolated_home / "models.toml").write_text(
            f'[models."eng:{MODEL}"]\ncontext_window = 1000\nmax_output = 500\n', encoding="utf-8"
        )
        entry = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert asked.returncode == 0, asked.stderr
    said = f"eng says {MODEL}'s context is 100 tokens, not the 200 wai had from "
    assert said in asked.stderr and "`wai models --refresh` reads the server's figures again" in asked.stderr
    assert asked.stderr.count(said) == 1
    assert any(said in w for w in json.loads(asked.stdout)["warnings"])
    report = json.loads(tokens.stdout)
    assert (report["total_context"], report["max_output"]) == (100, 50)
    assert entry.returncode == 0, entry.stderr
    assert f"eng says {MODEL}'s context is 100 tokens, not the 1500 wai had from " in entry.stderr
    entry_line = f'[models."eng:{MODEL}"] there'
    assert (
        f"models.toml: planned with 100; lower context_window and max_output under {entry_line}"
        in entry.stderr
    )
    assert [max_tokens for _, max_tokens in simulation.counts] == [50, 50]
    assert server.violations == []


def test_a_context_told_only_by_the_tokenizer_replaces_the_assumed_one_without_a_contradiction(
    isolated_home: Path,
) -> None:
    # GET /v1/models tells no context; POST /tokenize does (vLLM's max_model_len).
    listing = Reply.json({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
    with openai_server("vllm", models={MODEL: 1000}, routes={"GET /v1/models": listing}) as server:
        configure(isolated_home, server)
        dry = run_wai("ask", "--dry-run", "-m", f"eng:{MODEL}", "hi")
        first = run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi")
        again = run_wai("ask", "-m", f"eng:{MODEL}", "hi again")
        tokens = run_wai("tokens", "--json", "-m", f"eng:{MODEL}", "hi")
        listed = run_wai("models", "--json")
        simulation = server.simulation
        assert isinstance(simulation, OpenAISimulation)
    for run in (dry, first, again, tokens):
        assert run.returncode == 0, run.stderr
        assert "assumed" not in run.stderr and "wai: warning" not in run.stderr, run.stderr
    assert json.loads(first.stdout)["warnings"] == []
    assert json.loads(dry.stdout)["total_context"] == 1000
    assert json.loads(tokens.stdout)["total_context"] == 1000
    assert all(prompt + max_tokens <= 1000 for prompt, max_tokens in simulation.counts)
    (model,) = [m for m in json.loads(listed.stdout)["provider_models"] if m["id"] == f"eng:{MODEL}"]
    assert model["total_context"] == 1000  # kept for later runs


def test_a_listing_contradicted_by_the_tokenizer_is_one_warning_pointing_at_a_file(
    isolated_home: Path,
) -> None:
    listing = Reply.json(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "max_model_len": 4096}]}
    )
    with openai_server("vllm", models={MODEL: 1000}, routes={"GET /v1/models": listing}) as server:
        configure(isolated_home, server)
        run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 0, run.stderr
    [warning] = run.stderr.splitlines()
    assert f"eng says {MODEL}'s context is 1000 tokens, not the 4096 wai had from " in warning
    assert warning.endswith(
        f'set context_window and max_output under [models."eng:{MODEL}"] in {isolated_home / "models.toml"}'
    )


def test_wai_serves_listed_windows_are_read_exactly(isolated_home: Path) -> None:
    with openai_server("wai-serve", models={MODEL: 2048}) as server:
        configure(isolated_home, server)
        live = json.loads(run_wai("tokens", "--json", "-m", f"eng:{MODEL}", "hi").stdout)
        refreshed = run_wai("models", "--refresh")
        before = len(server.requests)
        asked = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
        # Known to be wai serve, which has no tokenizer route: the chat request alone is sent.
        assert [r.path for r in server.requests[before:]] == ["/v1/chat/completions"]
    assert (live["context_window"], live["max_output"], live["total_context"]) == (2048, 512, 2048)
    assert "1 with their context" in refreshed.stderr
    assert f"eng:{MODEL}  in 2048  out 512  total 2048" in refreshed.stdout
    assert "assumed" not in asked.stderr
    assert chat_requests(server)[-1].json["max_tokens"] == 512


@pytest.mark.e2e
def test_a_prompt_counted_by_the_server_stays_exact_when_the_stream_has_no_usage(isolated_home: Path) -> None:
    no_usage = Reply.sse(openai_chunks(answer=["a", "b", "c"]))
    with _served(isolated_home, "vllm", {"POST /v1/chat/completions": no_usage}):
        result = json.loads(run_wai("ask", "--json", "-m", f"eng:{MODEL}", "hi").stdout)
        child = pty_spawn.spawn(
            WAI,
            ["ask", "-m", f"eng:{MODEL}", "hi"],
            env=environment({"WAI_HOME": os.environ["WAI_HOME"]}),
            dimensions=(24, 80),
            encoding="utf-8",
            timeout=30,
        )
        text = "\n".join(finish(child, 24, 80).lines)
    assert result["usage"]["prompt_exact"] is True and result["usage"]["exact"] is False
    assert "in 5/64" in text and "out ~3/" in text


def test_a_server_ignoring_max_tokens_keeps_its_finish_and_absurd_usage_is_ignored(
    plain: WorkersAIServer,
) -> None:
    words = [f" w{i}" for i in range(50)]
    plain.script(Reply.sse(openai_chunks(answer=words, usage=usage_dict(5, 50))))
    over = run_wai("ask", "--json", "--max-tokens", "5", "-m", f"eng:{MODEL}", "hi")
    assert over.returncode == 0, over.stderr
    result = json.loads(over.stdout)
    assert result["finish_reason"] == "stop"
    assert "eng sent 50 reply tokens, more than the max_tokens of 5 it was sent" in over.stderr
    assert "output cap" not in over.stderr
    plain.script(Reply.sse(openai_chunks(answer=["Hello", " world"], usage=usage_dict(5, 10**12))))
    absurd = run_wai("ask", "--json", "--max-tokens", "5", "-m", f"eng:{MODEL}", "hi")
    result = json.loads(absurd.stdout)
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == 2 and result["usage"]["exact"] is False
    assert "eng reported 1000000000000 reply tokens for 11 characters; its usage is ignored" in absurd.stderr


@pytest.mark.parametrize("claimed", [0, 3])
def test_a_usage_lower_than_the_pieces_that_arrived_is_ignored_and_the_overrun_told(
    plain: WorkersAIServer, claimed: int
) -> None:
    # 40 pieces of text, each at least one token, for a max_tokens of 5, and a usage that says
    # fewer: the usage hides the overrun, so it is not taken for the count.
    words = [f" w{i}" for i in range(40)]
    plain.script(Reply.sse(openai_chunks(answer=words, usage=usage_dict(5, claimed))))
    run = run_wai("ask", "--json", "--max-tokens", "5", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == 40 and result["usage"]["exact"] is False
    said = f"eng reported {claimed} reply tokens for 40 pieces of text (each at least one token)"
    assert said in run.stderr
    assert "eng sent at least 40 reply tokens, more than the max_tokens of 5 it was sent" in run.stderr


def test_a_server_past_max_tokens_without_usage_keeps_its_finish_with_the_warning(
    plain: WorkersAIServer,
) -> None:
    # No usage: the events alone show it, each at least one token (20,000 for 500, say).
    plain.script(Reply.sse(openai_chunks(answer=[f" w{i}" for i in range(400)], finish="stop")))
    over = run_wai("ask", "--json", "--max-tokens", "50", "-m", f"eng:{MODEL}", "hi")
    assert over.returncode == 0, over.stderr
    result = json.loads(over.stdout)
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == 400 and result["usage"]["exact"] is False
    assert "eng sent at least 400 reply tokens, more than the max_tokens of 50 it was sent" in over.stderr
    assert "output cap" not in over.stderr
    plain.script(Reply.sse(openai_chunks(answer=[f" w{i}" for i in range(400)], finish="length")))
    cut = run_wai("ask", "--json", "--max-tokens", "50", "-m", f"eng:{MODEL}", "hi")
    assert json.loads(cut.stdout)["finish_reason"] == "length"
    assert "more than the max_tokens of 50" in cut.stderr


def test_an_unusable_openai_base_url_is_left_out_of_the_listing_and_refused_for_a_request(
    isolated_home: Path,
) -> None:
    env = {"OPENAI_BASE_URL": "ftp://x"}
    listing = run_wai("models", env=env)
    asked = run_wai("ask", "-m", "openai:m", "hi", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "wai: warning: OPENAI_BASE_URL: 'ftp://x' is not an http(s) URL" in listing.stderr
    assert "the provider openai is left out" in listing.stderr
    assert asked.returncode == 2 and "OPENAI_BASE_URL: 'ftp://x' is not an http(s) URL" in asked.stderr


def test_a_provider_that_cannot_be_refreshed_fails_the_refresh_even_when_workers_ai_succeeds(
    isolated_home: Path,
) -> None:
    from tests.support.workers_ai_server import Simulation, search_result

    with WorkersAIServer(Simulation(catalog=[search_result("@cf/acme/new-1b", window=8000)])) as cloud:
        (isolated_home / "config.toml").write_text(
            '[providers.down]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n', encoding="utf-8"
        )
        env = {
            "CLOUDFLARE_BASE_URL": cloud.base_url,
            "CLOUDFLARE_ACCOUNT_ID": "acct",
            "CLOUDFLARE_API_TOKEN": "tok",
        }
        run = run_wai("models", "--refresh", env=env)
    assert "wai: error: cannot refresh provider down: cannot reach down" in run.stderr
    assert "read 1 text-generation model from" in run.stderr
    assert run.returncode == 1


def test_messages_point_to_the_provider_backend_and_name_the_configured_providers(
    engine: WorkersAIServer, isolated_home: Path
) -> None:
    remote = run_wai("ask", "-m", f"eng:{MODEL}", "--backend", "remote", "hi")
    local = run_wai("ask", "-m", f"eng:{MODEL}", "--backend", "local", "hi")
    typo = run_wai("ask", "-m", f"eg:{MODEL}", "hi")
    (isolated_home / "models.toml").write_text(
        '[models."gone:x"]\ncontext_window = 100\nmax_output = 20\n', encoding="utf-8"
    )
    removed = run_wai("ask", "-m", "gone:x", "hi")
    (isolated_home / "config.toml").write_text("", encoding="utf-8")
    none = run_wai("ask", "-m", f"eg:{MODEL}", "hi")
    assert remote.returncode == 2
    assert "use --backend openai (or auto): it is a model of provider eng" in remote.stderr
    assert "use --backend openai (or auto)" in local.stderr
    assert typo.returncode == 2
    assert f"unknown model 'eg:{MODEL}': eg is not a configured provider (configured: eng)" in typo.stderr
    assert removed.returncode == 2
    assert "the models.toml entry 'gone:x': gone is not a configured provider (configured: eng)" in (
        removed.stderr
    )
    assert none.returncode == 2
    assert (
        f"unknown model 'eg:{MODEL}': eg is not a configured provider, and none is (add a "
        f"[providers.eg] table to {isolated_home / 'config.toml'}" in none.stderr
    )
    assert chat_requests(engine) == []


def test_workers_ai_sampling_ranges_do_not_bind_a_provider(plain: WorkersAIServer) -> None:
    wide = ("--top-k", "100", "--seed", "0", "--top-p", "0", "--temperature", "7")
    run = run_wai("ask", "-m", f"eng:{MODEL}", *wide, "hi")
    assert run.returncode == 0, run.stderr
    body = chat_requests(plain)[0].json
    assert (body["top_k"], body["seed"], body["top_p"], body["temperature"]) == (100, 0, 0.0, 7.0)
    remote = run_wai(
        "ask", "-m", "@cf/meta/llama-3.1-8b-instruct-fp8", "--top-k", "100", "hi",
        env={"CLOUDFLARE_ACCOUNT_ID": "acct", "CLOUDFLARE_API_TOKEN": "tok",
             "CLOUDFLARE_BASE_URL": "http://127.0.0.1:9/client/v4"},
    )  # fmt: skip
    assert remote.returncode == 2
    assert "Invalid value for '--top-k': 100 is not in the range 1<=x<=50 (Workers AI's range for it)" in (
        remote.stderr
    )
    negative = run_wai("ask", "-m", f"eng:{MODEL}", "--seed", "-1", "hi")
    assert negative.returncode == 2


def test_an_empty_stream_is_tried_once_more_and_suggests_the_assumed_window(isolated_home: Path) -> None:
    empty = Reply.sse([], done=False)
    with _served(isolated_home, "plain", {"POST /v1/chat/completions": empty}) as server:
        run = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
    assert run.returncode == 1
    assert (
        "eng sent no reply: the stream ended empty, before the server said it was done (gave up after 2 "
        "attempts) (the prompt may exceed eng's context: it tells none, and wai assumed 4096 tokens; set "
        f'context_window and max_output under [models."eng:{MODEL}"] in {isolated_home / "models.toml"})'
        in run.stderr
    )
    assert len(chat_requests(server)) == 2


def test_what_a_first_use_learns_is_kept_so_later_runs_probe_nothing(isolated_home: Path) -> None:
    with (
        openai_server("vllm", models={MODEL: 64}) as vllm,
        openai_server("plain", models={MODEL: 4096}) as bare,
    ):
        (isolated_home / "config.toml").write_text(
            f'[providers.eng]\ntype = "openai"\nbase_url = "{base_url(vllm)}"\n'
            f'[providers.bare]\ntype = "openai"\nbase_url = "{base_url(bare)}"\ntokenizer = "none"\n',
            encoding="utf-8",
        )
        first = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
        assumed = run_wai("ask", "--json", "-m", f"bare:{MODEL}", "hi")
        vllm.forget()
        bare.forget()
        again = run_wai("ask", "-m", f"eng:{MODEL}", "hi")
        assumed_again = run_wai("ask", "-m", f"bare:{MODEL}", "hi")
        listing = run_wai("models")
    assert first.returncode == 0 and again.returncode == 0, again.stderr
    assert [r.path for r in vllm.requests] == ["/tokenize", "/v1/chat/completions"]
    assert chat_requests(vllm)[0].json["max_tokens"] == 32  # the 64-token context, remembered
    said = f"bare tells no context length for {MODEL}: assumed 4096 tokens"
    assert said in assumed.stderr
    assert any(said in warning for warning in json.loads(assumed.stdout)["warnings"])
    assert [r.path for r in bare.requests] == ["/v1/chat/completions"]
    assert said not in assumed_again.stderr
    assert f"bare:{MODEL}" in listing.stdout and f"eng:{MODEL}  in 64  out 32  total 64" in listing.stdout


def test_jsonl_usage_counts_the_thinking_as_the_summary_does(plain: WorkersAIServer) -> None:
    plain.script(Reply.sse(openai_chunks(["a", "b", "c"], ["yes"], usage=usage_dict(5, 4))))
    lines = [
        json.loads(line) for line in run_wai("ask", "--jsonl", "-m", f"eng:{MODEL}", "hi").stdout.splitlines()
    ]
    [usage] = [line for line in lines if line["type"] == "usage"]
    assert usage["reasoning_tokens"] == 3 == lines[-1]["usage"]["reasoning_tokens"]

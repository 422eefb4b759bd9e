"""`wai serve` speaks Workers AI's protocol: raw HTTP requests and `wai` itself against a real server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.cli import run_wai
from tests.support.serve_process import ServeProcess, sse_data, stream_text
from tests.support.tiny_gguf import SPLIT_SCRIPT as SCRIPT

TINY = "@cf/test/tiny-q8_0"


def post(server: ServeProcess, model: str, body: object, **headers: str) -> httpx.Response:
    sent = {**server.headers, **headers}
    return httpx.post(server.run_url(model), json=body, headers=sent, timeout=60)


def assert_error(reply: httpx.Response, status: int, code: int) -> str:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    assert [e["code"] for e in body["errors"]] == [code]
    message: str = body["errors"][0]["message"]
    return message


# `wai` against the server


@pytest.mark.parametrize("ftype", ["f16", "q8_0"])
def test_wai_ask_through_the_server_writes_what_the_local_backend_writes(
    wai_serve: ServeProcess, client_home: Path, ftype: str
) -> None:
    model = f"@cf/test/tiny-{ftype}"
    greedy = ("--temperature", "0", "--max-tokens", "60")
    local = run_wai("ask", "-m", model, "--backend", "local", "--threads", "1", *greedy, "where is new york?")
    remote = run_wai(
        "ask", "-m", model, "--backend", "remote", *greedy, "where is new york?", env=wai_serve.client_env()
    )
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout == SCRIPT + "\n"
    assert remote.stderr == ""


def test_wai_ask_json_reports_the_servers_usage(wai_serve: ServeProcess, client_home: Path) -> None:
    done = run_wai("ask", "-m", TINY, "--json", "--no-stream", "hi", env=wai_serve.client_env())
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["text"] == SCRIPT and result["backend"] == "remote"
    assert result["usage"]["completion_tokens"] == 15 and result["usage"]["prompt_tokens"] > 0


def test_wai_ask_over_the_servers_window_exits_3(wai_serve: ServeProcess, client_home: Path) -> None:
    # The client's catalog believes in a larger window than the server enforces: the server refuses.
    (client_home / "models.toml").write_text(
        (client_home / "models.toml")
        .read_text()
        .replace("context_window = 300", "context_window = 3000", 1)
        .replace("total_context = 400", "total_context = 4000", 1)
    )
    done = run_wai("ask", "-m", "@cf/test/tiny-f16", "word " * 500, env=wai_serve.client_env())
    assert done.returncode == 3, done.stderr
    assert "5021" in done.stderr and done.stdout == ""


# Raw requests: prompt, messages, streamed or not


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "where is new york?"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
    ],
    ids=["prompt", "messages"],
)
def test_a_stream_sends_each_piece_then_usage_then_done(
    wai_serve: ServeProcess, body: dict[str, Any]
) -> None:
    reply = post(wai_serve, TINY, {**body, "stream": True})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    datas = sse_data(reply.text)
    assert datas[-1] == "[DONE]"
    text, events = stream_text(datas)
    assert text == SCRIPT
    assert all(set(e) == {"response"} for e in events[:-1])  # the pieces, nothing else
    last = events[-1]
    assert last["response"] == "" and last["finish_reason"] == "stop"
    usage = last["usage"]
    assert usage["completion_tokens"] == 15  # 11 word and byte tokens plus 4 bytes of 🎉, as written
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_a_reply_without_stream_comes_whole_in_the_envelope(wai_serve: ServeProcess) -> None:
    reply = post(wai_serve, TINY, {"prompt": "hi"})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    assert body["result"]["response"] == SCRIPT
    assert body["result"]["usage"]["completion_tokens"] == 15


def test_the_account_id_can_be_anything(wai_serve: ServeProcess) -> None:
    url = wai_serve.run_url(TINY, account="0123456789abcdef")
    reply = httpx.post(url, json={"prompt": "hi"}, headers=wai_serve.headers, timeout=60)
    assert reply.json()["result"]["response"] == SCRIPT


def test_max_tokens_is_capped_at_the_output_window(wai_serve: ServeProcess) -> None:
    reply = post(wai_serve, "@cf/test/loop-capped", {"prompt": "hi", "max_tokens": 5000, "stream": True})
    text, events = stream_text(sse_data(reply.text))
    assert events[-1]["usage"]["completion_tokens"] == 40  # max_output, not 5000
    assert events[-1]["finish_reason"] == "length"
    assert text.startswith("Hi 🎉!Hi 🎉!")


def test_without_max_tokens_the_reply_stops_at_workers_ais_default_of_256(wai_serve: ServeProcess) -> None:
    reply = post(wai_serve, "@cf/test/loop", {"prompt": "hi"})
    assert reply.json()["result"]["usage"]["completion_tokens"] == 256


def test_a_raw_prompt_is_sent_verbatim(wai_serve: ServeProcess, client_home: Path) -> None:
    # The tiny models write their script after the <|assistant|> token, wherever it comes from:
    # verbatim, the prompt decides where the reply starts.
    spelled = post(wai_serve, TINY, {"prompt": "<|user|>hi<|end|><|assistant|>", "raw": True})
    assert spelled.json()["result"]["response"] == SCRIPT
    unspelled = post(wai_serve, TINY, {"prompt": "hi", "raw": True, "max_tokens": 5})
    assert not unspelled.json()["result"]["response"].startswith("Hello")  # no template added
    # And `wai ask --raw` through the server writes what the local backend writes.
    raw = ("--raw", "--temperature", "0", "<|user|>hi<|end|><|assistant|>")
    local = run_wai("ask", "-m", TINY, "--backend", "local", "--threads", "1", *raw)
    remote = run_wai("ask", "-m", TINY, "--backend", "remote", *raw, env=wai_serve.client_env())
    assert (remote.returncode, remote.stdout) == (local.returncode, local.stdout) == (0, SCRIPT + "\n")


def test_the_penalties_are_applied(wai_serve: ServeProcess) -> None:
    # The loop model writes "Hi 🎉!" over and over; penalised hard enough, repeating loses to
    # any other token once each of its tokens has been written 8 times.
    greedy = {"prompt": "hi", "max_tokens": 100, "temperature": 0}
    plain = post(wai_serve, "@cf/test/loop", greedy).json()["result"]["response"]
    penalties = {"repetition_penalty": 2, "frequency_penalty": 2, "presence_penalty": 2}
    penalised = post(wai_serve, "@cf/test/loop", {**greedy, **penalties}).json()["result"]["response"]
    assert plain.startswith("Hi 🎉!" * 14)
    assert penalised.startswith("Hi 🎉!" * 7) and penalised != plain


# Errors, each with Workers AI's status and code


def test_a_missing_or_wrong_token_is_10000(wai_serve: ServeProcess) -> None:
    missing = httpx.post(wai_serve.run_url(TINY), json={"prompt": "hi"}, timeout=30)
    assert assert_error(missing, 401, 10000) == "Authentication error"
    wrong = post(wai_serve, TINY, {"prompt": "hi"}, Authorization="Bearer not-the-token")
    assert_error(wrong, 401, 10000)
    search = httpx.get(f"{wai_serve.base_url}/accounts/a/ai/models/search", timeout=30)
    assert_error(search, 401, 10000)


def test_an_unknown_model_is_5007_naming_the_served_ones(wai_serve: ServeProcess) -> None:
    message = assert_error(post(wai_serve, "@cf/meta/no-such-model", {"prompt": "hi"}), 400, 5007)
    assert "@cf/meta/no-such-model" in message and TINY in message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"prompt": "hi", "temperature": 5.5}, "temperature must be from 0 to 5"),
        ({"prompt": "hi", "top_p": 0}, "top_p must be from 0.001 to 1"),
        ({"prompt": "hi", "top_k": 51}, "top_k must be a whole number from 1 to 50"),
        ({"prompt": "hi", "seed": 0}, "seed must be a whole number from 1 to 9999999999"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens must be a whole number of at least 1"),
        ({"prompt": "hi", "repetition_penalty": 3}, "repetition_penalty must be from 0 to 2"),
        ({"prompt": "hi", "repetition_penalty": 0}, "repetition_penalty must be above 0"),
        ({"prompt": "hi", "presence_penalty": -2.5}, "presence_penalty must be from -2 to 2"),
        ({"prompt": "hi", "stream": "yes"}, "stream must be true or false"),
        ({"prompt": ""}, "prompt must be a non-empty string"),
        ({}, "the body needs prompt"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, "either prompt or messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content must be a string"),
        ({"messages": [{"role": "user", "content": "hi"}], "raw": True}, "raw needs prompt"),
        ({"prompt": "hi", "reasoning_effort": "max"}, "reasoning_effort must be low, medium or high"),
        ({"prompt": "hi", "response_format": {"type": "yaml"}}, "response_format.type must be text"),
        ({"prompt": "hi", "tools": [{"name": "f", "parameters": {}}]}, "tools is not supported by wai serve"),
        (
            {"prompt": "hi", "functions": [{"name": "f", "code": "x"}]},
            "functions is not supported by wai serve",
        ),
    ],
)
def test_invalid_input_is_5004_saying_what_is_wrong(
    wai_serve: ServeProcess, body: dict[str, Any], words: str
) -> None:
    assert words in assert_error(post(wai_serve, TINY, body), 400, 5004)


def test_a_body_that_is_not_json_is_5004(wai_serve: ServeProcess) -> None:
    reply = httpx.post(wai_serve.run_url(TINY), content=b"{nope", headers=wai_serve.headers, timeout=30)
    assert "not JSON" in assert_error(reply, 400, 5004)


def test_a_prompt_over_the_window_is_5021_before_any_decoding(wai_serve: ServeProcess) -> None:
    before = wai_serve.wait_idle(TINY)
    message = assert_error(post(wai_serve, TINY, {"prompt": "word " * 500, "stream": True}), 413, 5021)
    assert "accepts at most 300 input tokens" in message and "--fit" not in message
    after = wai_serve.wait_idle(TINY)
    assert after["tokens"] == before["tokens"] and after["completed"] == before["completed"]


def test_an_unknown_route_is_7003_and_a_wrong_method_7001(wai_serve: ServeProcess) -> None:
    assert_error(httpx.get(f"{wai_serve.base_url}/accounts/a/nothing", timeout=30), 404, 7003)
    assert_error(httpx.get(wai_serve.run_url(TINY), headers=wai_serve.headers, timeout=30), 405, 7001)


# The model search


def test_the_model_search_lists_the_served_models_with_their_windows(wai_serve: ServeProcess) -> None:
    url = f"{wai_serve.base_url}/accounts/a/ai/models/search"
    reply = httpx.get(url, params={"task": "Text Generation"}, headers=wai_serve.headers, timeout=30)
    body = reply.json()
    assert body["success"] is True
    by_name = {m["name"]: m for m in body["result"]}
    assert set(by_name) == {
        "@cf/test/tiny-f16",
        "@cf/test/tiny-q8_0",
        "@cf/test/loop",
        "@cf/test/loop-capped",
    }
    tiny = by_name[TINY]
    assert tiny["task"]["name"] == "Text Generation"
    properties = {p["property_id"]: p["value"] for p in tiny["properties"]}
    assert properties["context_window"] == "300" and properties["max_total_tokens"] == "400"
    assert body["result_info"] == {"page": 1, "per_page": 20, "count": 4, "total_count": 4}


def test_the_model_search_pages(wai_serve: ServeProcess) -> None:
    url = f"{wai_serve.base_url}/accounts/a/ai/models/search"
    names: list[str] = []
    for page in (1, 2, 3):
        body = httpx.get(
            url, params={"page": page, "per_page": 3}, headers=wai_serve.headers, timeout=30
        ).json()
        names += [m["name"] for m in body["result"]]
        assert body["result_info"]["page"] == page and body["result_info"]["total_count"] == 4
    assert len(names) == len(set(names)) == 4
    bad = httpx.get(url, params={"per_page": "x"}, headers=wai_serve.headers, timeout=30)
    assert_error(bad, 400, 5004)


# The OpenAI-compatible routes


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/client/v4/accounts/a/ai/v1/chat/completions"])
def test_openai_chat_completions_stream_chunks_with_usage(wai_serve: ServeProcess, path: str) -> None:
    body = {
        "model": TINY,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    reply = httpx.post(wai_serve.origin + path, json=body, headers=wai_serve.headers, timeout=60)
    datas = sse_data(reply.text)
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == TINY for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == SCRIPT
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 15


def test_openai_chat_completions_whole_and_errors(wai_serve: ServeProcess) -> None:
    url = wai_serve.origin + "/v1/chat/completions"
    body = {"model": TINY, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    whole = httpx.post(url, json=body, headers=wai_serve.headers, timeout=60).json()
    assert whole["object"] == "chat.completion"
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": SCRIPT}
    assert whole["usage"]["completion_tokens"] == 15
    unknown = httpx.post(url, json={**body, "model": "nope"}, headers=wai_serve.headers, timeout=60)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "5007"
    biased = httpx.post(url, json={**body, "logit_bias": {"42": 5}}, headers=wai_serve.headers, timeout=60)
    assert biased.status_code == 400
    assert biased.json()["error"]["message"] == "logit_bias is not supported by wai serve"
    no_token = httpx.post(url, json=body, timeout=60)
    assert no_token.status_code == 401 and no_token.json()["error"]["type"] == "authentication_error"


def test_openai_models_lists_the_served_models(wai_serve: ServeProcess) -> None:
    body = httpx.get(wai_serve.origin + "/v1/models", headers=wai_serve.headers, timeout=30).json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} >= {TINY, "@cf/test/loop"}


# The access log


def test_one_access_log_line_per_request_and_never_the_token(wai_serve: ServeProcess) -> None:
    marker = "/client/v4/accounts/log-marker-7/ai/run/" + TINY
    httpx.post(wai_serve.origin + marker, json={"prompt": "hi"}, headers=wai_serve.headers, timeout=60)
    httpx.post(
        wai_serve.origin + marker, json={"prompt": "hi", "top_k": 99}, headers=wai_serve.headers, timeout=60
    )
    ok = wai_serve.wait_for(re.compile(r"log-marker-7.* 200 ")).string
    refused = wai_serve.wait_for(re.compile(r"log-marker-7.* 400 ")).string
    assert len([line for line in wai_serve.stderr.splitlines() if "log-marker-7" in line]) == 2
    assert ok.startswith("wai serve: ") and "out 15/100" in ok and "stop" in ok
    assert "refused 5004" in refused
    assert wai_serve.token not in wai_serve.stderr


def test_a_refresh_from_wai_serve_records_each_window_and_keeps_local_models_own(
    tmp_path: Path, isolated_home: Path, tiny_models: dict[str, Any]
) -> None:
    from tests.support.serve_process import Served, write_catalog

    # The server runs a model under the id of a built-in local one, with smaller windows.
    server_home = tmp_path / "server"
    tiny = tiny_models["q8_0"]
    write_catalog(
        server_home,
        [Served("@cf/test/listed", tiny), Served("smollm2-135m-instruct-q8_0", tiny)],
    )
    with ServeProcess(server_home) as server:
        done = run_wai("models", "--refresh", "--json", env=server.client_env())
    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in json.loads(done.stdout)["models"]}
    listed = rows["@cf/test/listed"]
    # wai serve publishes 300 in, 100 out, 400 in all: each is recorded as it is.
    assert (listed["context_window"], listed["max_output"], listed["total_context"]) == (300, 100, 400)
    assert listed["backends"]["remote"]["available"] is True
    # The built-in entry runs its own GGUF file: its windows stay the file's (6144 in, 8192 in all).
    smol = rows["smollm2-135m-instruct-q8_0"]
    assert (smol["context_window"], smol["max_output"], smol["total_context"]) == (6144, 2048, 8192)


def test_openai_routes_answer_openai_errors_and_retrieve_a_model(wai_serve: ServeProcess) -> None:
    url = wai_serve.origin + "/v1/chat/completions"
    body = {"model": TINY, "messages": [{"role": "user", "content": "hi"}]}
    two = httpx.post(url, json={**body, "n": 2}, headers=wai_serve.headers, timeout=60)
    assert two.json()["error"]["message"] == "n must be 1: wai serve writes one reply per request"
    robot = {**body, "messages": [{"role": "robot", "content": "hi"}]}
    role = httpx.post(url, json=robot, headers=wai_serve.headers, timeout=60).json()["error"]["message"]
    assert role == "messages[0].role must be system, developer, user or assistant"
    # What the OpenAI SDKs show: the `error` object's message, on unknown routes and methods too.
    nothing = httpx.get(wai_serve.origin + "/v1/nothing", headers=wai_serve.headers, timeout=30)
    assert nothing.status_code == 404 and nothing.json()["error"]["message"] == "No route for that URI"
    wrong = httpx.get(url, headers=wai_serve.headers, timeout=30)
    assert (
        wrong.status_code == 405
        and wrong.json()["error"]["message"] == "Method GET not allowed for this route"
    )
    # models.retrieve
    for base in (wai_serve.origin, f"{wai_serve.base_url}/accounts/a/ai"):
        one = httpx.get(f"{base}/v1/models/{TINY}", headers=wai_serve.headers, timeout=30)
        assert one.status_code == 200 and one.json()["id"] == TINY and one.json()["object"] == "model"
    missing = httpx.get(wai_serve.origin + "/v1/models/@cf/no/such", headers=wai_serve.headers, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "5007"


def test_a_refused_token_is_logged_with_its_code(wai_serve: ServeProcess) -> None:
    httpx.post(wai_serve.origin + "/client/v4/accounts/no-token-9/ai/run/x", json={}, timeout=30)
    line = wai_serve.wait_for(re.compile(r"no-token-9.* 401 .*")).group(0)
    assert line.endswith("refused 10000")

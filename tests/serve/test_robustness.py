"""Requests meant to break `wai serve`: each gets one clear answer, and the model goes on serving."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.support.serve_process import Served, ServeProcess, write_catalog
from tests.support.tiny_gguf import SPLIT_SCRIPT, SPLIT_WHOLE, TinyModel, build_tiny_llama
from wai.serve.worker import FAULT_ENV

TINY = "@cf/test/tiny-q8_0"


def post_raw(server: ServeProcess, url: str, body: bytes, timeout: float = 60) -> httpx.Response:
    headers = {**server.headers, "content-type": "application/json"}
    return httpx.post(url, content=body, headers=headers, timeout=timeout)


def still_serves(server: ServeProcess, model: str = TINY) -> None:
    reply = httpx.post(server.run_url(model), json={"prompt": "hi"}, headers=server.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["result"]["response"] == SPLIT_SCRIPT


def test_a_lone_surrogate_is_refused_5004_and_the_model_serves_on(wai_serve: ServeProcess) -> None:
    body = rb'{"prompt":"\u0000\ud800 weird","max_tokens":3}'
    workers_ai = post_raw(wai_serve, wai_serve.run_url(TINY), body)
    assert workers_ai.status_code == 400, workers_ai.text
    [error] = workers_ai.json()["errors"]
    assert error["code"] == 5004
    assert error["message"].startswith(
        "prompt is not valid Unicode: a lone surrogate at character 1 (U+D800)"
    )
    openai = post_raw(
        wai_serve,
        wai_serve.origin + "/v1/chat/completions",
        b'{"model":"' + TINY.encode() + rb'","messages":[{"role":"user","content":"a\udfff"}]}',
    )
    assert openai.status_code == 400, openai.text
    assert openai.json()["error"]["message"].startswith(
        "messages[0].content is not valid Unicode: a lone surrogate at character 1 (U+DFFF)"
    )
    # A surrogate pair is one whole character, and welcome.
    paired = post_raw(wai_serve, wai_serve.run_url(TINY), rb'{"prompt":"hi \ud83c\udf89","max_tokens":3}')
    assert paired.status_code == 200, paired.text
    still_serves(wai_serve)


@pytest.fixture(scope="module")
def broken_template(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A model whose chat template fails with an error of its own (it divides by zero)."""
    path = tmp_path_factory.mktemp("serve-broken") / "broken.q8_0.gguf"
    template = "{{ (messages|length) // 0 }}"
    text = SPLIT_SCRIPT
    return build_tiny_llama(path, ftype="q8_0", script=text, whole=SPLIT_WHOLE, chat_template=template)


def test_a_chat_template_that_fails_is_a_400_and_a_raw_prompt_still_runs(
    isolated_home: Path, broken_template: TinyModel
) -> None:
    write_catalog(isolated_home, [Served("@cf/test/broken", broken_template)])
    with ServeProcess(isolated_home) as server:
        reply = httpx.post(
            server.run_url("@cf/test/broken"), json={"prompt": "hi"}, headers=server.headers, timeout=60
        )
        assert reply.status_code == 400, reply.text
        [error] = reply.json()["errors"]
        assert error["code"] == 5004 and "ZeroDivisionError" in error["message"]
        # Without the chat template the same model runs.
        raw = {"prompt": "<|user|>hi<|end|><|assistant|>", "raw": True}
        reply = httpx.post(server.run_url("@cf/test/broken"), json=raw, headers=server.headers, timeout=60)
        assert reply.json()["result"]["response"] == SPLIT_SCRIPT


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_failure_answers_500_and_the_model_serves_on(
    isolated_home: Path, tiny_models: dict[str, TinyModel], debug: bool
) -> None:
    faulty, sound = "@cf/test/faulty", "@cf/test/sound"
    write_catalog(isolated_home, [Served(faulty, tiny_models["q8_0"]), Served(sound, tiny_models["f16"])])
    flags = ("--debug",) if debug else ()
    with ServeProcess(isolated_home, *flags, env={FAULT_ENV: faulty}) as server:

        def ask(model: str) -> httpx.Response:
            url, headers = server.run_url(model), server.headers
            return httpx.post(url, json={"prompt": "hi"}, headers=headers, timeout=60)

        for _ in range(2):  # the second would wait forever behind a dead thread
            reply = ask(faulty)
            assert reply.status_code == 500, reply.text
            [error] = reply.json()["errors"]
            assert error["code"] == 3043
            said = f"wai serve could not run the model: RuntimeError: {FAULT_ENV} is set to {faulty}"
            assert error["message"] == said
        reply = ask(sound)
        assert reply.status_code == 200, reply.text
        assert server.metrics()[faulty]["failed"] == 2
        server.wait_for(re.compile(rf"{re.escape(faulty)}: unexpected error: RuntimeError"))
        assert ("Traceback (most recent call last)" in server.stderr) is debug


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Writes tokens of 4000 characters each, over and over: a stream that fills buffers fast."""
    path = tmp_path_factory.mktemp("serve-wide") / "wide.q8_0.gguf"
    pieces = ["a" * 4000, "b" * 4000]
    return build_tiny_llama(path, ftype="q8_0", script="", pieces=pieces, loop=True, context_length=32768)


def test_a_client_that_stops_reading_is_cut_and_frees_the_model(isolated_home: Path, wide: TinyModel) -> None:
    model = "@cf/test/wide"
    write_catalog(
        isolated_home, [Served(model, wide, context_window=2000, max_output=30000, total_context=32768)]
    )
    with ServeProcess(isolated_home, "--stall-limit", "1") as server:
        host, port = server.origin.removeprefix("http://").split(":")
        body = json.dumps({"prompt": "hi", "stream": True, "max_tokens": 29000}).encode()
        request = (
            f"POST /client/v4/accounts/a/ai/run/{model} HTTP/1.1\r\nhost: {host}\r\n"
            f"authorization: Bearer {server.token}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.socket() as reader:
            # A small receive buffer, never read: the server's writes stop, then its backlog fills.
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.connect((host, int(port)))
            reader.sendall(request)
            line = server.wait_for(
                re.compile(r"took no events for 1 s: its reply was cut after (\d+) tokens?")
            )
            assert int(line.group(1)) < 29000
            figures = server.wait_idle(model)
            assert figures["last_cancel"]["reason"] == "client gone (it took no events for 1 s)"
            # The model serves the next request while that connection is still open.
            reply = httpx.post(
                server.run_url(model),
                json={"prompt": "hi", "max_tokens": 3},
                headers=server.headers,
                timeout=60,
            )
            assert reply.json()["result"]["response"] == "a" * 4000 + "b" * 4000 + "a" * 4000


LONG_PROMPT = "x" * 16000  # a token per character: seconds of reading for the tiny model


@pytest.fixture
def reader(isolated_home: Path, served: list[Served]) -> Iterator[ServeProcess]:
    """The loop model with room for a long prompt."""
    loop = next(s for s in served if s.id == "@cf/test/loop")
    write_catalog(isolated_home, [replace(loop, context_window=30000, max_output=2000, total_context=32768)])
    with ServeProcess(isolated_home) as server:
        yield server


def open_stream(server: ServeProcess, client: httpx.Client) -> Generator[str, None, None]:
    """An OpenAI stream with the long prompt, once its first chunk (sent before the prompt is read) came."""
    body = {"model": "@cf/test/loop", "stream": True, "messages": [{"role": "user", "content": LONG_PROMPT}]}
    with client.stream(
        "POST", server.origin + "/v1/chat/completions", json=body, headers=server.headers
    ) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert '"role":"assistant"' in first
        yield first
        yield from lines


def test_a_client_that_leaves_while_the_prompt_is_read_stops_the_reading(reader: ServeProcess) -> None:
    with httpx.Client(timeout=120) as client:
        stream = open_stream(reader, client)
        next(stream)
        time.sleep(0.5)  # well into the seconds of reading (sooner would be stopped all the same)
        stream.close()
    cancel = reader.wait_idle("@cf/test/loop", timeout=120)["last_cancel"]
    # Had the reading gone on to its end, the first token would have come before the stop.
    assert cancel["reason"] == "client gone" and cancel["in_prompt"] is True
    assert cancel["pieces"] == 0 and cancel["pieces_after_cancel"] == 0
    reader.wait_for(re.compile(r"/v1/chat/completions\" 200 .*cut while reading the prompt: client gone"))


def test_sigterm_while_the_prompt_is_read_ends_the_stream_with_an_error_event(reader: ServeProcess) -> None:
    with httpx.Client(timeout=120) as client:
        stream = open_stream(reader, client)
        next(stream)
        time.sleep(0.5)
        reader.process.send_signal(signal.SIGTERM)
        reader.wait_for(re.compile("SIGTERM: stopping"))
        reader.process.send_signal(signal.SIGTERM)  # the second cuts at once
        rest = [line for line in stream if line.startswith("data:")]
    assert reader.stop() == 0
    assert rest and "[DONE]" not in rest[-1]
    error = json.loads(rest[-1].removeprefix("data:"))["error"]
    assert error["code"] == "3043" and "shutting down" in error["message"]
    assert "cut while reading the prompt: wai serve is shutting down" in reader.stderr


def test_sigterm_while_the_prompt_is_read_answers_503_not_a_bare_500(reader: ServeProcess) -> None:
    answer: list[httpx.Response] = []

    def ask() -> None:
        body = {"prompt": LONG_PROMPT, "max_tokens": 2000}
        answer.append(
            httpx.post(reader.run_url("@cf/test/loop"), json=body, headers=reader.headers, timeout=120)
        )

    asking = threading.Thread(target=ask)
    asking.start()
    while reader.metrics()["@cf/test/loop"]["running"] == 0:
        pass
    reader.process.send_signal(signal.SIGTERM)
    reader.wait_for(re.compile("SIGTERM: stopping"))
    reader.process.send_signal(signal.SIGTERM)
    asking.join()
    assert reader.stop() == 0
    [reply] = answer
    assert reply.status_code == 503, reply.text
    [error] = reply.json()["errors"]
    assert error["code"] in (3040, 3043) and "shutting down" in error["message"]


@pytest.mark.parametrize("route", ["run", "chat"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}",
            "the body nests arrays or objects too deeply to be read",
        ),
        (
            b'{"temperature":1' + b"0" * 400 + b"}",
            "temperature must be from 0 to 5, got a number of 401 digits",
        ),
        (
            b'{"frequency_penalty":-1' + b"0" * 400 + b"}",
            "frequency_penalty must be from -2 to 2, got a number of 401 digits",
        ),
        (b'{"max_tokens":' + b"1" * 5000 + b"}", "a number in the body has too many digits"),
    ],
)
def test_bodies_that_break_parsers_are_5004(
    wai_serve: ServeProcess, route: str, body: bytes, message: str
) -> None:
    if route == "run":
        url, body = wai_serve.run_url(TINY), body[:-1] + b',"prompt":"hi"}'
    else:
        url = wai_serve.origin + "/v1/chat/completions"
        body = body[:-1] + b',"model":"' + TINY.encode() + b'","messages":[{"role":"user","content":"hi"}]}'
    reply = post_raw(wai_serve, url, body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["errors"] == [{"code": 5004, "message": message}]


def test_an_unknown_model_name_with_a_lone_surrogate_is_echoed_safely(wai_serve: ServeProcess) -> None:
    body = b'{"model":"\\ud800","messages":[{"role":"user","content":"hi"}],"max_tokens":3}'
    reply = post_raw(wai_serve, wai_serve.origin + "/v1/chat/completions", body)
    assert reply.status_code == 400, reply.text
    assert "No such model \\ud800" in reply.json()["error"]["message"]
    reply = httpx.get(wai_serve.origin + "/v1/models/%ED%A0%80", headers=wai_serve.headers, timeout=30)
    assert reply.status_code == 404, reply.text


@pytest.mark.parametrize("debug", [False, True])
def test_uvicorns_errors_name_their_exception(debug: bool) -> None:
    from wai.serve.runner import quiet_uvicorn

    lines: list[str] = []
    quiet_uvicorn(lines.append, debug)
    try:
        raise RecursionError("maximum recursion depth exceeded")
    except RecursionError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    [line] = lines
    first, *trace = line.splitlines()
    if debug:
        assert first == "Exception in ASGI application: RecursionError: maximum recursion depth exceeded"
        assert trace[0] == "Traceback (most recent call last):" and "test_robustness.py" in line
    else:
        assert line == (
            "Exception in ASGI application: RecursionError: maximum recursion depth exceeded "
            "(--debug logs the traceback)"
        )


def test_a_path_cannot_write_control_characters_into_the_log(wai_serve: ServeProcess) -> None:
    host, port = wai_serve.origin.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        # No token needed: the refusal (400, a control character in the path) is logged all the same.
        conn.sendall(
            b"GET /inject-7%0Ay%1b%5D0;pwned%07%E2%80%AE HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        while conn.recv(65536):
            pass
    line = wai_serve.wait_for(re.compile(r".*inject-7.*")).group(0)
    assert '"GET /inject-7\\x0ay\\x1b]0;pwned\\x07\\u202e" 400 ' in line
    logged = "\n".join(x for x in wai_serve.stderr.splitlines() if "inject-7" in x or "pwned" in x)
    assert logged == line
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", wai_serve.stderr)


def test_a_body_over_8_mib_is_413_before_it_is_read(wai_serve: ServeProcess) -> None:
    host, port = wai_serve.origin.removeprefix("http://").split(":")
    size = 50 * 2**20
    with socket.create_connection((host, int(port))) as conn:
        head = (
            f"POST /client/v4/accounts/a/ai/run/{TINY} HTTP/1.1\r\nhost: x\r\n"
            f"authorization: Bearer {wai_serve.token}\r\ncontent-type: application/json\r\n"
            f"content-length: {size}\r\n\r\n"
        )
        conn.sendall(head.encode() + b'{"prompt":"' + b"word " * 1000)  # and nothing more is sent
        conn.settimeout(60)
        raw = b""
        while b'"messages":[]}' not in raw and (chunk := conn.recv(65536)):
            raw += chunk
    status, _, rest = raw.partition(b"\r\n")
    # The status code is what a client acts on; the reason phrase is Python's to choose (3.13 says
    # "Content Too Large", as RFC 9110 does, where earlier ones said "Request Entity Too Large").
    assert status.split(b" ")[:2] == [b"HTTP/1.1", b"413"], raw
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["errors"] == [
        {
            "code": 5021,
            "message": "Input too long: the request body is 50.0 MiB, over wai serve's limit of 8 MiB",
        }
    ]


def test_a_body_just_under_the_cap_far_over_the_window_is_refused_from_a_count_of_its_start(
    wai_serve: ServeProcess,
) -> None:
    body = {"prompt": "word " * (7 * 2**20 // 5)}  # 7 MiB
    reply = httpx.post(wai_serve.run_url(TINY), json=body, headers=wai_serve.headers, timeout=120)
    assert reply.status_code == 413, reply.text
    [error] = reply.json()["errors"]
    assert (
        error["code"] == 5021
        and "estimated from its start, which alone is over the window" in error["message"]
    )
    still_serves(wai_serve)

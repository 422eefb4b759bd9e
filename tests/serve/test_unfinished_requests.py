"""Clients that never finish a request, ask for no reply, or do not speak HTTP: each gets a JSON
answer where one can still be sent, and holds neither a connection nor a model."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.serve_process import Served, ServeProcess, write_catalog

LOOP = "@cf/test/loop"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory, served: list[Served]) -> Iterator[ServeProcess]:
    """A server that gives a client 1 s to send its headers, and 1 s between parts of a body."""
    home = tmp_path_factory.mktemp("serve-quick")
    write_catalog(home, served)
    with ServeProcess(home, "--read-timeout", "1") as server:
        yield server


def connect(server: ServeProcess) -> socket.socket:
    host, port = server.origin.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)))
    conn.settimeout(15)  # far over the read timeout: a server that waits on fails the test
    return conn


def read_all(conn: socket.socket) -> bytes:
    """Everything the server writes until it closes the connection."""
    raw = b""
    while chunk := conn.recv(65536):
        raw += chunk
    return raw


def status_and_body(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"content-type: application/json" in head.lower(), raw
    return status, json.loads(body)


def run_head(server: ServeProcess, length: int) -> bytes:
    return (
        f"POST /client/v4/accounts/a/ai/run/{LOOP} HTTP/1.1\r\nhost: x\r\n"
        f"authorization: Bearer {server.token}\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def test_half_a_header_block_is_answered_408_and_the_connection_closed(quick: ServeProcess) -> None:
    with connect(quick) as conn:
        started = time.monotonic()
        conn.sendall(f"POST /client/v4/accounts/a/ai/run/{LOOP} HTTP/1.1\r\nhost: x\r\n".encode())
        raw = read_all(conn)
        waited = time.monotonic() - started
    status, body = status_and_body(raw)
    assert status == 408 and waited < 10
    assert body["errors"] == [
        {"code": 5004, "message": "Request timeout: the header block did not arrive whole within 1 s"}
    ]
    quick.wait_for(re.compile(r'127\.0\.0\.1 "-" 408 · Request timeout: the header block'))


def test_a_connection_that_sends_nothing_is_closed(quick: ServeProcess) -> None:
    with connect(quick) as conn:
        assert read_all(conn) == b""


def test_half_a_body_is_answered_408_and_frees_the_connection(quick: ServeProcess) -> None:
    with connect(quick) as conn:
        conn.sendall(run_head(quick, 1000) + b'{"prompt":')
        raw = read_all(conn)
    status, body = status_and_body(raw)
    assert status == 408
    assert body["errors"] == [
        {"code": 5004, "message": "Request timeout: 10 of 1000 bytes of the body came, then none for 1 s"}
    ]
    assert quick.metrics()[LOOP]["requests"] == 0


def test_a_client_gone_mid_upload_is_logged_as_gone_not_as_a_failure(quick: ServeProcess) -> None:
    with connect(quick) as conn:
        conn.sendall(run_head(quick, 1000) + b'{"prompt":')
        time.sleep(0.3)  # the server is reading the body
    line = quick.wait_for(re.compile(r"client gone while sending its body \(10 of 1000 bytes came\)"))
    assert f'"POST /client/v4/accounts/a/ai/run/{LOOP}" - ' in line.string
    assert "ClientDisconnect" not in quick.stderr and " 500 " not in quick.stderr


def test_head_on_a_route_that_generates_answers_without_generating(quick: ServeProcess) -> None:
    before = quick.metrics()[LOOP]["requests"]
    with httpx.Client(headers=quick.headers, timeout=30) as client:
        reply = client.head(
            quick.origin + "/page/stream", params={"model": LOOP, "prompt": "hi", "max_tokens": "300"}
        )
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
    figures = quick.wait_idle(LOOP)
    assert figures["requests"] == before and figures["running"] == 0


@pytest.mark.parametrize(
    "name", [f"{LOOP}%0a", f"{LOOP}%0d%0a", f"{LOOP}%0D%0A", "@cf/test%0a/loop", f"{LOOP}%7f"]
)
def test_a_control_character_in_a_model_name_is_400_like_other_bad_names(
    quick: ServeProcess, name: str
) -> None:
    url = f"{quick.base_url}/accounts/a/ai/run/{name}"
    reply = httpx.post(url, json={"prompt": "hi", "max_tokens": 3}, headers=quick.headers, timeout=30)
    assert reply.status_code == 400, reply.text
    [error] = reply.json()["errors"]
    assert error["code"] == 5007 and "control character" in error["message"]
    openai = httpx.get(f"{quick.origin}/v1/models/{name}", headers=quick.headers, timeout=30)
    assert openai.status_code == 400 and "control character" in openai.json()["error"]["message"]
    assert quick.metrics()[LOOP]["requests"] == 0


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nhost: x\r\nbad header line\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n", 501),
    ],
)
def test_malformed_http_gets_the_json_envelope(
    quick: ServeProcess, request_bytes: bytes, status: int
) -> None:
    with connect(quick) as conn:
        conn.sendall(request_bytes)
        raw = read_all(conn)
    got, body = status_and_body(raw)
    assert got == status
    [error] = body["errors"]
    assert error["message"].startswith("the request is not valid HTTP/1.1: ")
    assert body["error"]["message"] == error["message"]
    # One line in the log, saying what was wrong.
    quick.wait_for(re.compile(rf'127\.0\.0\.1 "-" {status} · {re.escape(error["message"])}$'))
    assert "Invalid HTTP request received" not in quick.stderr

"""`wai serve` as a command: its refusals, its banner, the extra it needs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_wai
from tests.support.serve_process import Served, ServeProcess, write_catalog
from tests.support.tiny_gguf import SPLIT_SCRIPT as SCRIPT
from tests.support.tiny_gguf import TinyModel


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wai: error:"), done.stderr
    for word in words:
        assert word in lines[0]


def test_listening_beyond_loopback_needs_a_token_of_ones_own(isolated_home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WAI_SERVE_TOKEN"}
    os.environ.pop("WAI_SERVE_TOKEN", None)
    done = run_wai("serve", "--host", "0.0.0.0", env=env)
    assert_one_line_error(done, 2, "refusing to listen on 0.0.0.0", "WAI_SERVE_TOKEN")


def test_beyond_loopback_a_short_token_is_refused(isolated_home: Path) -> None:
    done = run_wai("serve", "--host", "0.0.0.0", env={"WAI_SERVE_TOKEN": "abc"})
    assert_one_line_error(done, 2, "refusing to listen on 0.0.0.0 with a token of 3 characters", "16")


def test_an_empty_token_is_refused(isolated_home: Path) -> None:
    assert_one_line_error(run_wai("serve", env={"WAI_SERVE_TOKEN": " "}), 2, "the token is empty")


def test_nothing_to_serve_says_how_to_get_a_model(isolated_home: Path) -> None:
    done = run_wai("serve", env={"WAI_SERVE_TOKEN": "t0ken-t0ken"})
    assert_one_line_error(done, 2, "no model to serve", "wai setup")


def test_a_named_model_must_exist_and_have_its_file(
    isolated_home: Path, tiny_models: dict[str, TinyModel]
) -> None:
    env = {"WAI_SERVE_TOKEN": "t0ken-t0ken"}
    assert_one_line_error(run_wai("serve", "-m", "nope", env=env), 2, "unknown model 'nope'")
    gone = Served("@cf/test/gone", TinyModel(isolated_home / "gone.gguf", "", (), 512))
    write_catalog(isolated_home, [gone])
    assert_one_line_error(run_wai("serve", "-m", "@cf/test/gone", env=env), 2, "gone.gguf is missing")


def test_a_providers_model_is_refused_naming_its_server(isolated_home: Path) -> None:
    (isolated_home / "config.toml").write_text(
        '[providers.gpu]\ntype = "openai"\nbase_url = "http://gpu-box:8000/v1"\n', encoding="utf-8"
    )
    done = run_wai("serve", "-m", "gpu:org/model", env={"WAI_SERVE_TOKEN": "t0ken-t0ken"})
    assert_one_line_error(done, 2, "provider gpu", "http://gpu-box:8000/v1", "GGUF models on this machine")


def test_a_port_in_use_is_one_line(isolated_home: Path, tiny_models: dict[str, TinyModel]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = run_wai(
            "serve",
            "-m",
            str(tiny_models["f16"].path),
            "--port",
            port,
            env={"WAI_SERVE_TOKEN": "t0ken-t0ken"},
        )
    assert_one_line_error(done, 2, f"cannot listen on 127.0.0.1 port {port}", "--port")


def test_a_generated_token_comes_with_a_ready_to_paste_export_line(
    isolated_home: Path, tiny_models: dict[str, TinyModel]
) -> None:
    served = [Served("@cf/test/tiny", tiny_models["q8_0"])]
    write_catalog(isolated_home, served)
    with ServeProcess(isolated_home, token=None) as server:
        export = next(line for line in server.stderr.splitlines() if "export " in line)
        pasted = dict(part.split("=", 1) for part in export.split("export ", 1)[1].split())
        assert set(pasted) == {"CLOUDFLARE_BASE_URL", "CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN"}
        assert len(pasted["CLOUDFLARE_API_TOKEN"]) >= 32
        assert f"{server.origin}/?token={pasted['CLOUDFLARE_API_TOKEN']}" in server.stderr
        done = run_wai("ask", "-m", "@cf/test/tiny", "hi", env=pasted)
        assert (done.returncode, done.stdout) == (0, SCRIPT + "\n"), done.stderr
        server.wait_for(re.compile(r'"POST .*" 200'))
        after_banner = server.stderr.split("OpenAI clients:", 1)[1]
        assert pasted["CLOUDFLARE_API_TOKEN"] not in after_banner  # printed once, never logged


def test_a_gguf_path_is_served_under_its_file_name(
    isolated_home: Path, tiny_models: dict[str, TinyModel]
) -> None:
    import httpx

    path = tiny_models["f16"].path
    with ServeProcess(isolated_home, "-m", str(path)) as server:
        reply = httpx.post(
            server.run_url(path.name), json={"prompt": "hi"}, headers=server.headers, timeout=60
        )
        assert reply.json()["result"]["response"] == SCRIPT


def test_without_the_serve_extra_it_says_how_to_install_it(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Python where starlette cannot be imported, as after a plain `pip install .`.
    monkeypatch.setitem(sys.modules, "starlette", None)
    done = run_wai("serve", env={"WAI_SERVE_TOKEN": "t0ken-t0ken"})
    assert done.stderr.strip() == (
        "wai: error: wai serve needs the optional packages of its `serve` extra: starlette is missing "
        "(install it with `pip install 'wai[serve]'`, or `make install` in a source checkout)"
    )
    assert done.returncode == 2


@pytest.mark.e2e
def test_other_commands_do_not_load_the_server_packages() -> None:
    code = (
        "import sys, wai.app\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'anyio')]\n"
        "print(loaded)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "[::1]"])
def test_loopback_addresses_are_recognised(host: str) -> None:
    from wai.serve.command import is_loopback

    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.2", "example.com"])
def test_other_addresses_are_not_loopback(host: str) -> None:
    from wai.serve.command import is_loopback

    assert not is_loopback(host)


def test_two_files_of_one_name_are_refused_naming_both(
    isolated_home: Path, tmp_path: Path, tiny_models: dict[str, TinyModel]
) -> None:
    first, second = tmp_path / "ga" / "x.gguf", tmp_path / "gb" / "x.gguf"
    for path, ftype in ((first, "f16"), (second, "q8_0")):
        path.parent.mkdir()
        path.write_bytes(tiny_models[ftype].path.read_bytes())
    done = run_wai(
        "serve", "--port", "0", "-m", str(first), "-m", str(second), env={"WAI_SERVE_TOKEN": "t0ken-t0ken"}
    )
    assert_one_line_error(done, 2, "two models would be served as 'x.gguf'", str(first), str(second))


def test_a_served_file_that_is_gone_is_a_500_that_does_not_say_where_it_was(
    isolated_home: Path, tmp_path: Path, tiny_models: dict[str, TinyModel]
) -> None:
    secret = tmp_path / "secret-folder-41"
    secret.mkdir()
    path = secret / "mine.gguf"
    path.write_bytes(tiny_models["q8_0"].path.read_bytes())
    with ServeProcess(isolated_home, "-m", str(path)) as server:
        path.unlink()
        reply = httpx.post(
            server.run_url("mine.gguf"), json={"prompt": "hi"}, headers=server.headers, timeout=60
        )
        assert reply.status_code == 500
        [error] = reply.json()["errors"]
        assert error["code"] == 3043
        assert (
            error["message"]
            == "mine.gguf's model file is gone from this server; its administrator can restore it"
        )
        assert "secret-folder-41" not in reply.text
        server.wait_for(re.compile(f"mine.gguf: its model file {re.escape(str(path))} is gone"))


@pytest.mark.parametrize("option", ["--stall-limit", "--read-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_a_number_of_seconds_must_be_finite(isolated_home: Path, option: str, value: str) -> None:
    done = run_wai("serve", option, value)
    assert done.returncode == 2, done.stderr
    assert f"Invalid value for '{option}'" in done.stderr and "Traceback" not in done.stderr


def test_each_connection_sends_without_waiting_for_acknowledgements() -> None:
    """Nagle's algorithm is off on every accepted connection (asyncio turns it off only for a
    socket that says it is TCP): with it on, the second part of a reply on a kept-alive
    connection waited 40 ms for the client's delayed acknowledgement."""
    import asyncio

    from wai.serve.command import _bind

    listening = _bind("127.0.0.1", 0)

    async def accepted_nodelay() -> int:
        got: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Accept(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                got.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Accept, sock=listening)
        with socket.create_connection(listening.getsockname()):
            value = await asyncio.wait_for(got, 10)
        server.close()
        await server.wait_closed()
        return value

    assert asyncio.run(accepted_nodelay()) == 1

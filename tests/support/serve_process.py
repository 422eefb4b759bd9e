"""A real `wai serve` in a subprocess on 127.0.0.1, on a port the system picks, and its stderr."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cli import WAI
from tests.support.tiny_gguf import TinyModel

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
_EXPORT = re.compile(r"export (.*)$")
_BANNER_END = re.compile(r"OpenAI clients: base_url ")


@dataclass(frozen=True)
class Served:
    """A model the server runs: its catalog id, its file, and its windows."""

    id: str
    model: TinyModel
    context_window: int = 300
    max_output: int = 100
    total_context: int = 400

    def catalog_entry(self) -> str:
        keys = {
            "gguf": str(self.model.path),
            "context_window": self.context_window,
            "max_output": self.max_output,
            "total_context": self.total_context,
        }
        return f'[models."{self.id}"]\n' + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())


def write_catalog(home: Path, models: Sequence[Served]) -> None:
    """The same entries on both sides: the server serves them, `wai` the client knows their windows."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.toml").write_text("\n".join(m.catalog_entry() for m in models))


class ServeProcess:
    """`wai serve --port 0 ...` started and read until it listens; stopped by a signal. `prefix`
    starts it through another command (`nohup`, say)."""

    def __init__(
        self,
        home: Path,
        *args: str,
        token: str | None = "serve-test-token-7c1e",
        env: dict[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "WAI_SERVE"))}
        full_env["WAI_HOME"] = str(home)
        if token is not None:
            full_env["WAI_SERVE_TOKEN"] = token
        full_env.update(env or {})
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [*prefix, WAI, "serve", "--port", "0", "--threads", "1", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.origin = self.wait_for(_LISTENING).group(1)
        self.wait_for(_BANNER_END)
        self.token = token if token is not None else self._generated_token()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        """The first stderr line matching `pattern`, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    found = pattern.search(line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"wai serve never wrote {pattern.pattern!r}:\n" + self.stderr)
                self._changed.wait(min(left, 0.5))

    def _generated_token(self) -> str:
        export = self.wait_for(_EXPORT).group(1)
        return dict(part.split("=", 1) for part in export.split())["CLOUDFLARE_API_TOKEN"]

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/client/v4"

    def run_url(self, model: str, account: str = "account-1") -> str:
        return f"{self.base_url}/accounts/{account}/ai/run/{model}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client_env(self) -> dict[str, str]:
        """What `wai` needs to use this server as Workers AI."""
        return {
            "CLOUDFLARE_BASE_URL": self.base_url,
            "CLOUDFLARE_ACCOUNT_ID": "account-1",
            "CLOUDFLARE_API_TOKEN": self.token,
        }

    def metrics(self) -> dict[str, Any]:
        import httpx

        reply = httpx.get(f"{self.origin}/debug/metrics", headers=self.headers, timeout=10)
        reply.raise_for_status()
        models: dict[str, Any] = reply.json()["models"]
        return models

    def wait_idle(self, model: str, timeout: float = 30) -> dict[str, Any]:
        """The model's figures once nothing runs or waits on it."""
        deadline = time.monotonic() + timeout
        while True:
            figures: dict[str, Any] = self.metrics()[model]
            if (figures["running"], figures["waiting"]) == (0, 0) or time.monotonic() > deadline:
                return figures
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("wai serve did not stop after " + signal.Signals(sig).name) from None
        self._reader.join(5)
        return code

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sse_data(raw: str) -> list[str]:
    """The `data:` payloads of an event stream, in order (what a client reads)."""
    return [line[5:].lstrip(" ") for line in raw.splitlines() if line.startswith("data:")]


def stream_text(datas: Sequence[str]) -> tuple[str, list[dict[str, Any]]]:
    """The reply's text from Workers AI events, and the JSON events ([DONE] left out)."""
    events = [json.loads(d) for d in datas if d != "[DONE]"]
    return "".join(e.get("response", "") for e in events), events


def iter_served(models: dict[str, TinyModel]) -> Iterator[Served]:
    for ftype, model in models.items():
        yield Served(f"@cf/test/tiny-{ftype}", model)

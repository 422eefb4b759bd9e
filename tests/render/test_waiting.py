"""What the panel shows before the reply's first token, watched on a pseudo-terminal as it goes: a
spinner that moves, the seconds waited, and while a local model reads a long prompt, how much of
it is read. The installed `wai`; each screen rebuilt by a terminal emulator (pyte) from the bytes
written so far."""

from __future__ import annotations

import os
import re
import threading
import time

import pexpect
import pyte
import pytest

from tests.render.terminal import environment
from tests.support import pty_spawn
from tests.support.cli import WAI
from tests.support.tiny_gguf import TinyModel, build_tiny_llama
from tests.support.workers_ai_server import Reply, WorkersAIServer

pytestmark = pytest.mark.e2e

ROWS, COLS = 24, 100
SPINNER = re.compile(r"^([⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]) (.*)$")
READING = re.compile(r"reading the prompt: ([\d,]+) of ([\d,]+) tokens \((\d+)%\)")
WAITED = re.compile(r" · (\d+)s$")


def spawn(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    return pty_spawn.spawn(
        WAI,
        args,
        env=environment({"WAI_HOME": os.environ["WAI_HOME"], **env}),
        dimensions=(ROWS, COLS),
        encoding="utf-8",
        codec_errors="replace",
        timeout=120,
    )


class Watcher:
    """Every spinner line the screen showed, in order, read from the pty until the reply begins."""

    def __init__(self, child: pexpect.spawn) -> None:
        self.child = child
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.Stream(self.screen)
        self.lines: list[str] = []  # each distinct spinner line, as drawn

    def spinner_line(self) -> str | None:
        return next((line.rstrip() for line in self.screen.display if SPINNER.match(line.rstrip())), None)

    def read(self, until: float, stop: re.Pattern[str] | None = None) -> None:
        """Feed the screen what arrives, noting each new spinner line, for `until` seconds at most,
        until the spinner is gone after it was seen (the reply began), or until it says `stop`."""
        deadline = time.monotonic() + until
        while time.monotonic() < deadline and not (stop and self.lines and stop.search(self.lines[-1])):
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=0.05))
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return
            line = self.spinner_line()
            if line is None and self.lines:
                return
            if line is not None and (not self.lines or line != self.lines[-1]):
                self.lines.append(line)

    def finish(self) -> int:
        self.child.expect(pexpect.EOF)
        self.child.close()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)


def glyphs(lines: list[str]) -> set[str]:
    return {m.group(1) for line in lines if (m := SPINNER.match(line))}


def seconds(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := WAITED.search(line))]


def test_waiting_for_a_remote_reply_the_spinner_moves_and_counts_the_seconds(
    workers_ai_server: WorkersAIServer,
) -> None:
    gate = threading.Event()
    workers_ai_server.script(
        Reply.gated([], gate, [{"response": "New York."}, {"response": "", "usage": {"prompt_tokens": 3}}])
    )
    child = spawn(
        ["ask", "-m", "@cf/meta/llama-3.1-8b-instruct-fp8", "where is new york?"],
        {
            "CLOUDFLARE_BASE_URL": workers_ai_server.base_url,
            "CLOUDFLARE_ACCOUNT_ID": "acct",
            "CLOUDFLARE_API_TOKEN": "tok-waiting",
        },
    )
    watcher = Watcher(child)
    watcher.read(until=30, stop=re.compile(r" · 2s$"))  # the first token is held back meanwhile
    gate.set()
    watcher.read(until=30)
    assert watcher.finish() == 0
    assert all("waiting for the reply" in line for line in watcher.lines), watcher.lines
    assert len(glyphs(watcher.lines)) >= 5, watcher.lines  # it turns, frame after frame
    assert seconds(watcher.lines)[0] == 1 and 2 in seconds(watcher.lines)
    assert seconds(watcher.lines) == sorted(seconds(watcher.lines))


@pytest.fixture(scope="module")
def slow_reader(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny model that takes a few seconds over a prompt of several thousand tokens (more
    layers than the shared ones: each batch of 512 takes a while)."""
    path = tmp_path_factory.mktemp("slow-reader") / "reader.f16.gguf"
    return build_tiny_llama(path, ftype="f16", script="Read it.", context_length=8192, n_layer=6)


def test_a_long_local_prompt_shows_how_much_of_it_is_read_as_it_is_read(slow_reader: TinyModel) -> None:
    prompt = "word " * 850  # each a byte token here, the space 3: about 5,950 tokens, 12 batches
    child = spawn(["ask", "-m", str(slow_reader.path), "--threads", "1", prompt], {})
    watcher = Watcher(child)
    watcher.read(until=120)
    assert watcher.finish() == 0
    reads = [(m.group(1), m.group(2)) for line in watcher.lines if (m := READING.search(line))]
    assert reads, watcher.lines
    totals = {total for _, total in reads}
    assert len(totals) == 1 and int(totals.pop().replace(",", "")) > 5000
    read = [int(done.replace(",", "")) for done, _ in reads]
    # It moves as llama.cpp reads batch after batch (a few seconds here; a fast machine may read
    # several batches between two frames), and the spinner turns meanwhile.
    assert len(set(read)) >= 2, watcher.lines
    assert read == sorted(read)
    assert all(n % 512 == 0 for n in read)  # llama.cpp's batches
    assert len(glyphs(watcher.lines)) >= 2

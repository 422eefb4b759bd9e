"""The REPL's overhead per turn: Enter to first token in `wai chat`, against `wai ask` on the same
loopback backend, both on a pseudo-terminal (so both stream through the live panel).

For `wai chat` the clock starts as Enter is written to an already running session, so the figure
is what a conversation costs per turn: counting the conversation, planning, the request, the
first frame, and writing the previous turn's transcript. For `wai ask` it starts at the command's
launch, which is what a person waits for there. Medians over a conversation of TURNS turns and
over ASKS runs; the REPL's figure as a ratio to `wai ask`'s. Quick mode: two turns, one ask.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pexpect
from tests.support import pty_spawn
from tests.support.chat_terminal import expect_prompt, leave, spawn_chat
from tests.support.workers_ai_server import Simulation, WorkersAIServer

from bench.common import LOOPBACK_MODEL, LOOPBACK_SHORT, WAI, Figures, loopback_env, sized


@dataclass(frozen=True, slots=True)
class Sizes:
    turns: int
    asks: int
    typing: float  # seconds a person takes to type the first message


FULL = Sizes(turns=12, asks=8, typing=1.0)
QUICK = Sizes(turns=2, asks=1, typing=0.0)


def chat_first_tokens(env: dict[str, str], size: Sizes) -> list[float]:
    child = spawn_chat("-m", LOOPBACK_MODEL, env=env, timeout=30)
    child.delaybeforesend = None  # pexpect sleeps before each send by default
    times = []
    for turn in range(size.turns):
        expect_prompt(child, LOOPBACK_SHORT)
        if turn == 0:
            time.sleep(size.typing)
        started = time.perf_counter()
        child.send(f"question {turn}\r")
        child.expect("token1")
        times.append(time.perf_counter() - started)
        child.expect("token20")
    expect_prompt(child, LOOPBACK_SHORT)
    leave(child)
    return times


def ask_first_tokens(env: dict[str, str], size: Sizes) -> list[float]:
    times = []
    for turn in range(size.asks):
        started = time.perf_counter()
        # Started by subprocess, not forked: this process runs the loopback server's thread.
        child = pty_spawn.spawn(
            WAI,
            ["ask", "-m", LOOPBACK_MODEL, f"question {turn}"],
            env=env,
            dimensions=(40, 120),
            encoding="utf-8",
            timeout=30,
        )
        child.expect("token1")
        times.append(time.perf_counter() - started)
        child.expect(pexpect.EOF)
        child.close()
    return times


def main() -> Figures:
    size = sized(FULL, QUICK)
    with (
        tempfile.TemporaryDirectory(prefix="wai-repl-bench-") as home,
        WorkersAIServer(Simulation(reply_tokens=20)) as server,
    ):
        env = loopback_env(Path(home), server.base_url)
        env.update(TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1")
        ask = statistics.median(ask_first_tokens(env, size))
        chat = chat_first_tokens(env, size)
    per_turn = statistics.median(chat)
    print(f"wai ask, launch to first token     1.00   ({ask * 1000:.0f} ms, median of {size.asks}, baseline)")
    print(
        f"wai chat, Enter to first token     {per_turn / ask:.3f}x ({per_turn * 1000:.1f} ms, median of "
        f"{size.turns} turns; first {chat[0] * 1000:.1f} ms, last {chat[-1] * 1000:.1f} ms)"
    )
    return {"wai chat Enter / wai ask launch, to first token": per_turn / ask}


if __name__ == "__main__":
    main()

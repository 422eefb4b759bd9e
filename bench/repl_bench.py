"""The REPL's overhead per turn: Enter to first token in `wai chat`, against `wai ask` on the same
loopback backend, both on a pseudo-terminal (so both stream through the live panel).

For `wai chat` the clock starts as Enter is written to an already running session, so the figure
is what a conversation costs per turn: counting the conversation, planning, the request, the
first frame, and writing the previous turn's transcript. For `wai ask` it starts at the command's
launch, which is what a person waits for there. Medians over a conversation of TURNS turns and
over ASKS runs; the REPL's figure as a ratio to `wai ask`'s.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect
from tests.support.chat_terminal import expect_prompt, leave, spawn_chat
from tests.support.workers_ai_server import Simulation, WorkersAIServer

TURNS = 12
ASKS = 8
TYPING = 1.0
MODEL = "@cf/meta/llama-2-7b-chat-int8"
WAI = str(Path(sys.executable).with_name("wai"))


def chat_first_tokens(env: dict[str, str]) -> list[float]:
    child = spawn_chat("-m", MODEL, env=env, timeout=30)
    child.delaybeforesend = None  # pexpect sleeps before each send by default
    times = []
    for turn in range(TURNS):
        expect_prompt(child, "llama-2-7b-chat-int8")
        if turn == 0:
            time.sleep(TYPING)  # a person takes a moment to type the first message
        started = time.perf_counter()
        child.send(f"question {turn}\r")
        child.expect("token1")
        times.append(time.perf_counter() - started)
        child.expect("token20")
    expect_prompt(child, "llama-2-7b-chat-int8")
    leave(child)
    return times


def ask_first_tokens(env: dict[str, str]) -> list[float]:
    times = []
    for turn in range(ASKS):
        started = time.perf_counter()
        child = pexpect.spawn(
            WAI,
            ["ask", "-m", MODEL, f"question {turn}"],
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


def main() -> None:
    home = tempfile.mkdtemp(prefix="wai-repl-bench-")
    with WorkersAIServer(Simulation(reply_tokens=20)) as server:
        env = {
            **os.environ,
            "WAI_HOME": home,
            "TERM": "xterm-256color",
            "PROMPT_TOOLKIT_NO_CPR": "1",
            "CLOUDFLARE_BASE_URL": server.base_url,
            "CLOUDFLARE_ACCOUNT_ID": "bench",
            "CLOUDFLARE_API_TOKEN": "bench",
        }
        os.environ["WAI_HOME"] = home  # spawn_chat starts from this process's environment
        ask = statistics.median(ask_first_tokens(env))
        chat = chat_first_tokens(env)
    per_turn = statistics.median(chat)
    print(f"wai ask, launch to first token     1.00   ({ask * 1000:.0f} ms, median of {ASKS}, the baseline)")
    print(
        f"wai chat, Enter to first token     {per_turn / ask:.3f}x ({per_turn * 1000:.1f} ms, median of "
        f"{TURNS} turns; first {chat[0] * 1000:.1f} ms, last {chat[-1] * 1000:.1f} ms)"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()

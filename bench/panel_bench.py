"""The live panel's cost: whole-process CPU time of `wai ask` streaming a synthetic markdown answer
(prose, lists, code, tables) at full speed from the loopback Workers AI server, on a pseudo-terminal
(the panel) against the same stream into a pipe (plain text), and against the naive way of showing
markdown live, `Live(Markdown(full_text))` redrawn on every token, all measured in the same run.

Figures are ratios of child-process CPU time (user + system, from wait4), medians of a few runs;
absolute times are shown beside them. The naive approach runs once, at 1,000 tokens only: it costs
tens of seconds there and grows with the square of the length.

Goals: the panel at most 3x plain mode; at least 50x cheaper than naive at 1,000 tokens; growth
from 1,250 to 2,500 tokens at most 2.2x. Whole-process figures include `wai ask`'s own start-up,
which alone is more than a fiftieth of the naive cost here, so the turn alone is shown as well:
the same answers streamed in-process, modules already loaded, CPU from the turn's start to finish.

Quick mode streams 50 and 100 tokens, one run each.

    python -m bench.run panel_bench        # the whole comparison
    python bench/panel_bench.py --turn ... # (the in-process child itself, on a terminal)
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.common import Figures

REPO = Path(__file__).resolve().parent.parent
WAI = str(Path(sys.executable).with_name("wai"))
ROWS, COLS = 40, 120


@dataclass(frozen=True, slots=True)
class Sizes:
    short: int  # answers of short, middle and long tokens; the naive way runs at `short` only
    middle: int
    long: int
    runs: int  # medians of this many runs
    pace: float  # seconds between tokens for the paced panel


FULL = Sizes(short=1000, middle=1250, long=2500, runs=3, pace=1 / 500)
QUICK = Sizes(short=50, middle=50, long=100, runs=1, pace=1 / 2000)
_TOKEN = re.compile(r"\s*\S{1,4}|\s+")


def synthetic_answer(tokens: int) -> list[str]:
    """An answer of exactly `tokens` stream tokens (about 4 characters each, like Llama's): the
    panel tests' markdown document of prose, lists, code and tables."""
    sys.path.insert(0, str(REPO))
    from tests.render.documents import synthetic

    size = tokens
    while True:
        pieces = _TOKEN.findall(synthetic(size))
        if len(pieces) >= tokens:
            return pieces[:tokens]
        size *= 2


def _sse_events(tokens: Sequence[str]) -> list[dict[str, object]]:
    usage = {"prompt_tokens": 12, "completion_tokens": len(tokens), "total_tokens": 12 + len(tokens)}
    events: list[dict[str, object]] = [{"response": token} for token in tokens]
    return [*events, {"response": "", "usage": usage}]


def _reap(process: subprocess.Popen[bytes]) -> float:
    """Wait for the child; its CPU seconds (user + system)."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
    return usage.ru_utime + usage.ru_stime


def on_terminal(command: list[str], env: dict[str, str]) -> float:
    """Run `command` on a fresh pseudo-terminal, reading everything it writes; its CPU seconds."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                if not os.read(master, 1 << 16):
                    break
            except OSError:  # EIO: every end of the terminal's other side is closed
                break
    finally:
        os.close(master)
    return _reap(process)


def into_pipe(command: list[str], env: dict[str, str]) -> float:
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert process.stdout is not None
    while process.stdout.read(1 << 16):
        pass
    process.stdout.close()
    return _reap(process)


def _stream(mode: str, count: int, pace: float) -> float:
    """One turn shown on this terminal, `mode` "panel" or "naive"; CPU seconds of the turn alone
    (modules are imported before the clock starts, as in a long-running program)."""
    import time

    from rich.console import Console
    from rich.live import Live
    from rich.markdown import Markdown

    import wai.render.live_region
    import wai.render.markdown_view  # noqa: F401  (what PanelSink loads on its first turn)
    from wai.events import Finish, Token
    from wai.render.panel import PanelSink
    from wai.turn_result import TurnInfo, TurnResult

    tokens = synthetic_answer(count)
    console = Console()
    from bench.common import LOOPBACK_MODEL

    info = TurnInfo(LOOPBACK_MODEL, "remote", "f16", 3072, 2500, 2500, prompt_tokens=12)
    started = time.process_time()
    if mode == "naive":
        text = ""
        with Live(console=console) as live:
            for token in tokens:
                text += token
                live.update(Markdown(text), refresh=True)
    else:
        sink = PanelSink(console)
        sink.start(info)
        for token in tokens:
            sink.feed(Token(token))
            if pace:
                time.sleep(pace)
        sink.feed(Finish("stop"))
        sink.finish(TurnResult(info, text="".join(tokens), finish_reason="stop", completion_tokens=count))
    return time.process_time() - started


def main() -> Figures:
    sys.path.insert(0, str(REPO))
    from tests.support.workers_ai_server import Reply, WorkersAIServer

    from bench.common import LOOPBACK_MODEL, loopback_env, sized

    size = sized(FULL, QUICK)
    short, middle, long = size.short, size.middle, size.long
    home = Path(tempfile.mkdtemp(prefix="wai-panel-bench-"))
    ask = [WAI, "ask", "-m", LOOPBACK_MODEL, "Explain caching."]  # its 2,500-token cap fits every answer
    with WorkersAIServer() as server:
        env = loopback_env(home, server.base_url)
        for name in ("NO_COLOR", "COLUMNS", "LINES"):
            env.pop(name, None)
        env["TERM"] = "xterm-256color"

        def ask_cpu(runner: str, tokens: int) -> float:
            events = _sse_events(synthetic_answer(tokens))
            times = []
            for _ in range(size.runs):
                server.script(Reply.sse(events))
                times.append(on_terminal(ask, env) if runner == "panel" else into_pipe(ask, env))
            return statistics.median(times)

        if size is FULL:
            server.script(Reply.sse(_sse_events(synthetic_answer(50))))
            on_terminal(ask, env)  # warm the disk cache and byte-compile
        plain = ask_cpu("plain", long)
        panel = {tokens: ask_cpu("panel", tokens) for tokens in (short, middle, long)}

    def turn_cpu(mode: str, tokens: int, pace: float = 0.0, runs: int = size.runs) -> tuple[float, float]:
        """Medians of (whole process, turn alone) CPU seconds of the in-process child."""
        report = home / "turn-cpu"
        command = [sys.executable, str(Path(__file__).resolve()), "--turn", mode, str(tokens), str(pace)]
        wholes, turns = [], []
        for _ in range(runs):
            wholes.append(on_terminal([*command, str(report)], env))
            turns.append(float(report.read_text()))
        return statistics.median(wholes), statistics.median(turns)

    naive_whole, naive_turn = turn_cpu("naive", short, runs=1)
    turn = {tokens: turn_cpu("panel", tokens)[1] for tokens in (short, middle, long)}
    _, paced = turn_cpu("panel", long, size.pace, runs=1)
    wall = long * size.pace
    figures = {
        f"panel / plain, {long} tokens": panel[long] / plain,
        f"naive / panel, {short} tokens": naive_whole / panel[short],
        f"panel, {long} / {middle} tokens": panel[long] / panel[middle],
        f"turn alone: naive / panel, {short} tokens": naive_turn / turn[short],
        f"turn alone: panel, {long} / {middle} tokens": turn[long] / turn[middle],
        f"paced panel: CPU / wall, {long} tokens": paced / wall,
    }

    def row(name: str, ratio: float, detail: str, goal: str = "") -> None:
        print(f"{name:<46} {ratio:7.2f}x  {detail:<24} {goal}")

    print(f"# CPU seconds (user + system) on a {COLS}x{ROWS} pseudo-terminal; medians of {size.runs} runs")
    print("# whole processes: `wai ask` against the loopback server, streaming at full speed")
    row(
        f"panel / plain into a pipe, {long:,} tokens",
        panel[long] / plain,
        f"{panel[long]:.2f} / {plain:.2f} s",
        "goal <= 3",
    )
    row(
        f"naive / panel, {short:,} tokens",
        naive_whole / panel[short],
        f"{naive_whole:.2f} / {panel[short]:.2f} s",
        "goal >= 50 (see the turn alone)",
    )
    row(
        f"panel, {long:,} / {middle:,} tokens",
        panel[long] / panel[middle],
        f"{panel[long]:.2f} / {panel[middle]:.2f} s",
        "goal <= 2.2",
    )
    print("# the turn alone (start to finish, modules loaded), same answers, same terminal")
    row(
        f"naive / panel, {short:,} tokens",
        naive_turn / turn[short],
        f"{naive_turn:.2f} / {turn[short]:.3f} s",
    )
    row(
        f"panel, {long:,} / {middle:,} tokens",
        turn[long] / turn[middle],
        f"{turn[long]:.3f} / {turn[middle]:.3f} s",
    )
    print(
        f"# the panel at {1 / size.pace:.0f} tokens/s: {paced:.2f} s CPU over {wall:.1f} s of stream"
        f" ({paced / wall:.1%} of a core)"
    )
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--turn"]:
        # The in-process child: stream one turn, write its CPU seconds to the report file.
        mode, count, pace, report = sys.argv[2:]
        sys.path.insert(0, str(REPO))
        Path(report).write_text(repr(_stream(mode, int(count), float(pace))))
    else:
        main()

"""Streams a markdown file through PanelSink on this process's terminal, as `wai ask` would.

    python tests/render/panel_driver.py FILE [--chunk N] [--delay S] [--reason stop|length]
        [--no-stats] [--pause-after N]

The reply comes from a small in-process backend through the real turn driver, so Ctrl-C lands
where it would in `wai ask`. Exits 0, or 130 when interrupted. `--pause-after N` stops the stream
after N chunks (and prints nothing more) until the process is interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator

from wai.catalog import ModelSpec
from wai.conversation import Message, Request
from wai.events import Event, Finish, FinishReason, Token, Usage
from wai.render.panel import PanelSink, panel_supported
from wai.turn import TurnInterrupted, run_turn, turn_info


class ScriptedBackend:
    name = "remote"

    def __init__(self, chunks: list[str], delay: float, reason: FinishReason, pause_after: int | None) -> None:
        self.chunks = chunks
        self.delay = delay
        self.reason = reason
        self.pause_after = pause_after

    def stream(self, request: Request) -> Iterator[Event]:
        for index, chunk in enumerate(self.chunks):
            if self.pause_after is not None and index == self.pause_after:
                sys.stderr.write("PAUSED\n")
                sys.stderr.flush()
                time.sleep(60)
            if self.delay:
                time.sleep(self.delay)
            yield Token(chunk)
        yield Usage(prompt_tokens=31, completion_tokens=len(self.chunks), exact=True)
        yield Finish(self.reason)

    def precision(self, request: Request) -> str | None:
        return "int8"

    def describe(self) -> dict[str, object]:
        return {}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--chunk", type=int, default=7)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--reason", default="stop")
    parser.add_argument("--no-stats", action="store_true")
    parser.add_argument("--pause-after", type=int, default=None)
    args = parser.parse_args()

    from rich.console import Console

    with open(args.file, encoding="utf-8") as handle:
        text = handle.read()
    chunks = [text[i : i + args.chunk] for i in range(0, len(text), args.chunk)]
    console = Console()
    if not panel_supported(console):
        print("PANEL UNSUPPORTED")
        return 2
    model = ModelSpec(
        id="@cf/meta/llama-2-7b-chat-int8", context_window=2048, max_output=1800, total_context=4096, remote=True
    )
    request = Request(model=model, messages=(Message("user", "hi"),), max_tokens=1800, prompt_tokens=31)
    backend = ScriptedBackend(chunks, args.delay, args.reason, args.pause_after)  # type: ignore[arg-type]
    sink = PanelSink(console, show_stats=not args.no_stats)
    try:
        run_turn(backend, request, sink, turn_info(backend, request))
    except TurnInterrupted:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

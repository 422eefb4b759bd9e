"""Streams a markdown file through PanelSink on this process's terminal, as `wai ask` would.

    python tests/render/panel_driver.py FILE [--chunk N] [--delay S] [--reason stop|length]
        [--no-stats] [--pause-after N --pause-file PATH] [--thinking FILE [--show-thinking]]

The reply comes from a small in-process backend through the real turn driver, so Ctrl-C lands
where it would in `wai ask`. Exits 0, or 130 when interrupted. With `--pause-after N` the stream
stops after N chunks: PATH.paused is created, and the stream goes on once PATH.resume exists.
With `--thinking FILE` the reply starts with that file's text as the model's thinking (Reasoning
events, in chunks of the same size), as a reasoning model's does.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from wai.backends.base import BackendSettings
from wai.backends.request import Request
from wai.backends.workers_ai.backend import WorkersAI
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.events import Event, Finish, FinishReason, Reasoning, Token, Usage
from wai.render.panel import PanelSink, panel_supported
from wai.turn.stream import stream_turn, turn_info


class ScriptedBackend(WorkersAI):
    """Workers AI, as panels title it, with the reply scripted: nothing is sent."""

    def __init__(
        self,
        chunks: list[str],
        delay: float,
        reason: FinishReason,
        pause: tuple[int, Path] | None,
        thinking: list[str] | None = None,
    ) -> None:
        super().__init__("remote", BackendSettings())
        self.thinking = thinking or []
        self.chunks = chunks
        self.delay = delay
        self.reason = reason
        self.pause = pause

    def stream(self, request: Request) -> Iterator[Event]:
        for thought in self.thinking:
            if self.delay:
                time.sleep(self.delay)
            yield Reasoning(thought)
        for index, chunk in enumerate(self.chunks):
            if self.pause is not None and index == self.pause[0]:
                path = self.pause[1]
                Path(f"{path}.paused").touch()
                deadline = time.monotonic() + 30
                while not Path(f"{path}.resume").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            if self.delay:
                time.sleep(self.delay)
            yield Token(chunk)
        # A reply stopped by the cap used every token it was allowed.
        used = request.max_tokens if self.reason == "length" else len(self.thinking) + len(self.chunks)
        yield Usage(prompt_tokens=31, completion_tokens=used, exact=True)
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
    parser.add_argument("--pause-file", type=Path, default=None)
    parser.add_argument("--thinking", type=Path, default=None)
    parser.add_argument("--show-thinking", action="store_true")
    args = parser.parse_args()

    from rich.console import Console

    with open(args.file, encoding="utf-8") as handle:
        text = handle.read()
    chunks = [text[i : i + args.chunk] for i in range(0, len(text), args.chunk)]
    thinking: list[str] = []
    if args.thinking is not None:
        thought = args.thinking.read_text(encoding="utf-8")
        thinking = [thought[i : i + args.chunk] for i in range(0, len(thought), args.chunk)]
    console = Console()
    if not panel_supported(console):
        print("PANEL UNSUPPORTED")
        return 2
    model = ModelSpec(
        id="@cf/meta/llama-2-7b-chat-int8",
        context_window=2048,
        max_output=1800,
        total_context=4096,
        remote=True,
    )
    request = Request(model=model, messages=(Message("user", "hi"),), max_tokens=1800, prompt_tokens=31)
    pause = (args.pause_after, args.pause_file) if args.pause_after is not None else None
    backend = ScriptedBackend(chunks, args.delay, args.reason, pause, thinking)
    sink = PanelSink(console, show_stats=not args.no_stats, show_thinking=args.show_thinking)
    result = stream_turn(backend, request, sink, turn_info(backend, request))
    return 130 if result.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())

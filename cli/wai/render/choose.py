"""Pick the sink once, from the environment and the flags (the way HTTPie picks its stream)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Literal, TextIO

from wai.render.base import Sink
from wai.turn_result import TurnResult

ColorMode = Literal["auto", "always", "never"]
OutputMode = Literal["auto", "json", "jsonl"]


def plain_style(color: ColorMode) -> bool:
    """True for `--color never`, or NO_COLOR without `--color always`: no colour, bold or dim."""
    return color == "never" or (color == "auto" and "NO_COLOR" in os.environ)


def choose_sink(
    *,
    output: OutputMode,
    color: ColorMode,
    stats: bool | None,
    show_thinking: bool = False,
    stdout: TextIO | None = None,
    stderr_stats: Callable[[TurnResult], None] | None = None,
    schema: bool = False,
) -> Sink:
    """JSON when asked; the live panel on a capable terminal (or with --color always); else plain.

    `stats` None means the default: a footer in the panel, nothing in plain mode. The thinking of
    a reasoning model shows in the panel only (`show_thinking`: whole, else folded once the
    answer begins); plain text is the answer alone, and the JSON sinks carry it apart.
    `schema` (--schema): the panel and plain text show the reply only once it is validated.
    """
    out = stdout or sys.stdout
    if output == "json":
        from wai.render.result_json import JsonSink

        return JsonSink(out)
    if output == "jsonl":
        from wai.render.jsonl import JsonlSink

        return JsonlSink(out)
    if color == "always" or out.isatty():
        from rich.console import Console

        from wai.render.panel import PanelSink, panel_supported

        console = Console(
            file=out,
            force_terminal=True if color == "always" else None,
            # No colour means no styling at all, bold and dim included (Rich's no_color keeps them).
            color_system=None if plain_style(color) else "auto",
        )
        if color == "always" or panel_supported(console):
            panel = PanelSink(console, show_stats=stats is not False, show_thinking=show_thinking)
            return _held(panel, pretty=True) if schema else panel
    from wai.render.plain import PlainSink

    plain = PlainSink(out, stats=stderr_stats if stats else None)
    return _held(plain, pretty=False) if schema else plain


def _held(sink: Sink, *, pretty: bool) -> Sink:
    from wai.render.held_json import HeldJsonSink

    return HeldJsonSink(sink, pretty=pretty)

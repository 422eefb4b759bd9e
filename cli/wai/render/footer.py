"""The figures of a finished turn, as one line: in the panel's footer, or on stderr after plain output."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wai.turn_result import TurnInfo, TurnResult

if TYPE_CHECKING:
    from rich.text import Text

# (text, style name) pieces; the styles are in wai.render.theme.
Part = tuple[str, str]


def backend_label(info: TurnInfo) -> str:
    name = info.backend_title or info.backend
    return f"{name} {info.precision}" if info.precision else name


def seconds(value: float) -> str:
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes}m{rest:02d}s"


def _count(value: int, exact: bool) -> str:
    return f"{value}" if exact else f"~{value}"


def cap_advice(info: TurnInfo) -> str:
    """How to get more of a reply the output cap stopped: a larger max_tokens only where one is
    allowed; at the model's own cap, or where the context has no more room, ask it to continue."""
    most = info.most_tokens
    if info.max_tokens < most:
        return f"{info.more_hint} (up to {most}) for more"
    if most >= info.max_output:
        return f"ask it to continue for more (the model's cap is {info.max_output})"
    return f"ask it to continue for more (the prompt leaves room for {most} in the context)"


def thinking_cap_hint(info: TurnInfo) -> str:
    """What to do when the thinking filled max_tokens before the answer began: a larger
    max_tokens where one is allowed, and a shorter thinking."""
    most = info.most_tokens
    if info.max_tokens < most:
        return f"{info.more_hint} (up to {most}) or {info.effort_hint}"
    return info.effort_hint


def stats_parts(result: TurnResult, *, tokens_seen: int | None = None, tick: bool = False) -> list[Part]:
    """The footer's pieces. `tokens_seen` (token events counted by the sink) stands in, marked
    approximate, when the backend reported no completion count. `tick` shows a reply that ended
    normally as a check mark instead of "done"."""
    info = result.info
    parts: list[Part] = []
    reason = result.finish_reason
    own_limit = result.completion_tokens is not None and result.completion_tokens < info.max_tokens
    if reason == "length" and result.thinking_only and not own_limit:
        parts.append(("the thinking used the whole output window", "wai.footer.warn"))
        parts.append((thinking_cap_hint(info), "wai.footer.warn"))
    elif reason == "length" and own_limit:
        # The server's finish_reason "length" came before max_tokens: the model's own limit.
        parts.append(("stopped by the model's own length limit", "wai.footer.warn"))
        parts.append(("ask it to continue for more", "wai.footer.warn"))
    elif reason == "length":
        parts.append(("stopped at the output cap", "wai.footer.warn"))
        parts.append((cap_advice(info), "wai.footer.warn"))
    elif reason == "interrupted":
        parts.append(("interrupted", "wai.footer.warn"))
    elif reason == "error":
        parts.append(("failed", "wai.footer.bad"))
    elif reason == "stop":
        parts.append(("✓" if tick else "done", "wai.footer.ok"))

    completion = result.completion_tokens
    completion_exact = result.usage_exact
    if completion is None and tokens_seen:
        completion, completion_exact = tokens_seen, False
    if completion is not None:
        cap = (
            f"{info.max_tokens}"
            if info.max_tokens == info.max_output
            else f"{info.max_tokens} of {info.max_output}"
        )
        parts.append((f"out {_count(completion, completion_exact)}/{cap}", "wai.footer"))
    if result.prompt_tokens is not None:
        prompt = _count(result.prompt_tokens, result.prompt_exact)
        cached = f" ({result.cached_tokens} cached)" if result.cached_tokens else ""
        parts.append((f"in {prompt}/{info.context_window}{cached}", "wai.footer"))
    parts.extend(cost_parts(result))

    timings = result.timings
    if timings.first_token is not None:
        parts.append((f"first token {seconds(timings.first_token)}", "wai.footer"))
    if completion is not None and (rate := timings.tokens_per_second(completion)) is not None:
        parts.append((f"{'' if completion_exact else '~'}{rate:.1f} tok/s", "wai.footer"))
    if timings.load is not None:
        parts.append((f"load {seconds(timings.load)}", "wai.footer"))
    parts.append((backend_label(info), "wai.footer"))
    return parts


def cost_parts(result: TurnResult) -> list[Part]:
    """The turn's cost by the catalog's price (`~` where a count was estimated), in neurons too on a
    backend that bills in them; nothing for a model without a price."""
    from wai.pricing import neurons_text, usd_text

    cost = result.cost
    if cost is None:
        return []
    mark = "" if result.usage_exact and result.prompt_exact else "~"
    parts: list[Part] = [(f"{mark}{usd_text(cost.usd)}", "wai.footer")]
    if result.info.bills_neurons:
        parts.append((f"{mark}{neurons_text(cost.neurons)}", "wai.footer"))
    return parts


def format_stats(result: TurnResult, *, tokens_seen: int | None = None) -> str:
    """One plain line for stderr, e.g. `done · out 412/1800 · in 31/2048 · first token 0.42s · ...`:
    reply and prompt tokens against the model's output and context windows."""
    return " · ".join(text for text, _ in stats_parts(result, tokens_seen=tokens_seen))


def footer_text(
    result: TurnResult, *, width: int, tokens_seen: int | None = None, cap_only: bool = False
) -> Text:
    """The footer for a terminal `width` columns wide: wrapped between pieces, never inside one.
    `cap_only` keeps just what is said when the output cap stopped the reply."""
    from rich.cells import cell_len
    from rich.text import Text

    text = Text(style="wai.footer", overflow="fold", no_wrap=False)
    column = 0
    separator = ""
    parts = stats_parts(result, tokens_seen=tokens_seen, tick=True)
    if cap_only:
        parts = (
            [part for part in parts if part[1] == "wai.footer.warn"]
            if result.finish_reason == "length"
            else []
        )
    for piece, style in parts:
        size = cell_len(piece)
        if separator and column + len(separator) + size > width:
            # The trailing dot only where it fits: a full row would push it onto a row of its own.
            fits = column + len(separator.rstrip()) <= width
            text.append((separator.rstrip() if fits else "") + "\n", style="wai.footer")
            column = 0
        elif separator:
            text.append(separator, style="wai.footer")
            column += len(separator)
        text.append(piece, style=style)
        column += size
        separator = " " if piece == "✓" else " · "
    return text

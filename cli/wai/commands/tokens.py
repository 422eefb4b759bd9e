"""`wai tokens`: how many tokens a text costs a model, against its windows."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import BinaryIO

from wai.backends.base import Backend, BackendMode, BackendName
from wai.backends.registry import LocalOptions, backend_named
from wai.catalog.entries import ModelSpec
from wai.commands.prompt_input import read_prompt, valid_text
from wai.conversation import Message
from wai.errors import EXIT_OK, EXIT_WINDOW
from wai.notices import Notifier
from wai.terminal.safe_text import for_terminal, json_for_terminal
from wai.tokens.budget import counter_warnings, input_limit, silent_cut_risk, told_windows
from wai.tokens.counters import RawCounter, VocabCounter
from wai.tokens.estimate import HOW_ESTIMATED
from wai.turn.planner import TurnPlanner


def run_tokens(
    text: str | None,
    *,
    model: str | None,
    system: str | None,
    backend: BackendMode,
    raw: bool,
    json_output: bool,
    notifier: Notifier | None = None,
    use_stdin: bool = True,
    stdin: BinaryIO | None = None,
) -> int:
    stream = stdin if stdin is not None else (sys.stdin.buffer if sys.stdin else None)
    prompt = read_prompt(
        text, stream, stream is None or stream.isatty(), notifier, allow_blank=raw, use_stdin=use_stdin
    )
    # Counting needs no credentials or weights: the backend only decides which template is used,
    # and it is the one `wai ask` would run. Nothing runs; a provider's connection the count opened
    # is closed after it.
    with TurnPlanner.for_user(LocalOptions()) as planner:
        target = planner.resolve(model, backend, sending=False)
        backend_name = target.backend
        messages: tuple[Message, ...] = (Message("user", prompt),)
        if system:
            messages = (Message("system", valid_text(system, "the system prompt", notifier)), *messages)
        spec = planner.windows(target)
        counting = planner.backends.for_planning(backend_name)
        report = count_report(spec, backend_name, text=prompt, messages=messages, raw=raw, backend=counting)
    warnings = report.pop("warnings", [])
    for warning in warnings if isinstance(warnings, list) else []:
        (notifier or Notifier()).warn(str(warning))
    if json_output:
        from wai.render.failure_json import error_object

        # Over the limit is this command's failure (exit 3): said as every --json failure is.
        noun = "token" if report["tokens"] == 1 else "tokens"
        over = f"{report['display']} {noun}, over {spec.id}'s input limit of {report['input_limit']}"
        report["error"] = None if report["fits"] else error_object("window", over, EXIT_WINDOW)
        sys.stdout.write(
            json_for_terminal(json.dumps(report, indent=2, ensure_ascii=False), sys.stdout) + "\n"
        )
    else:
        what = (
            "the raw prompt as sent: special-token text as special tokens, BOS where the model adds one"
            if raw
            else "the prompt as sent"
        )
        exactness = "exact" if report["exact"] else "estimated"  # counted_with says why
        limit, window = report["input_limit"], report["context_window"]
        # The limit is the input window less the least reply worth sending, where that is less.
        why = (
            f" ({report['total_context']}-token context less room for a reply)"
            if isinstance(limit, int) and isinstance(window, int) and limit < window
            else ""
        )
        verdict = (
            f"fits {spec.id}'s input limit of {limit}{why}, "
            f"leaving room for {report['reply_room']} reply tokens"
            if report["fits"]
            else f"over {spec.id}'s input limit of {limit}{why}"
        )
        lines = (
            f"{report['display']} token{'s' if report['tokens'] != 1 else ''} "
            f"({what}; {exactness}; {report['counted_with']})\n"
            f"{verdict} (context_window {report['context_window']}, max_output {report['max_output']}, "
            f"total_context {report['total_context']})\n"
        )
        if "how_estimated" in report:
            lines += f"{report['how_estimated']}\n"
        sys.stdout.write(for_terminal(lines, sys.stdout))  # names from a catalog or a file
    return EXIT_OK if report["fits"] else EXIT_WINDOW


def count_report(
    model: ModelSpec,
    backend_name: BackendName,
    *,
    text: str | None = None,
    messages: Sequence[Message] = (),
    raw: bool = False,
    requested_max_tokens: int | None = None,
    include_ids: bool = False,
    backend: Backend | None = None,
) -> dict[str, object]:
    """`wai tokens`: the count against `model`'s windows, as a JSON-ready dict.

    `raw`: `text` as `wai ask --raw` sends it (RawCounter): no template, special-token text as the
    special tokens it names, BOS where the vocabulary adds one.
    Otherwise the prompt that `messages` (or `text` as one user message) would send.
    `include_ids` adds the token ids under "ids" (None for an estimate). `backend`: the
    backend as the command made it (its connections are the command's to close).
    """
    backend = backend or backend_named(backend_name)
    counter = backend.counter(model)
    ids: list[int] | None = None
    if raw:
        if text is None:
            raise ValueError("raw counting needs a text")
        raw_counter = RawCounter(counter)
        ids = raw_counter.raw_ids(text)
        count = raw_counter.count_raw(text)
        counter = raw_counter
    else:
        convo = tuple(messages) or (Message("user", text or ""),)
        if isinstance(counter, VocabCounter):
            ids = counter.prompt_tokens(convo)
            count = len(ids)
        else:
            count = counter.count_prompt(convo)
    warnings = counter_warnings(counter)
    told = told_windows(model, counter)
    if told is not None:  # the server's own limit, as `wai ask` plans with it
        model, warning = told
        warnings += [warning] if warning else []
    # The windows below may be an assumption (one the count did not replace): said first.
    warnings = [*backend.warnings(model), *warnings]
    limit = input_limit(model, requested_max_tokens)
    risk = silent_cut_risk(model, counter, count, limit)
    warnings += [risk] if risk else []
    report: dict[str, object] = {
        "model": model.id,
        "backend": backend_name,
        "tokens": count,
        "exact": counter.exact,
        "display": f"{'' if counter.exact else '~'}{count}",
        "raw": raw,
        "counted_with": counter.source,
        "context_window": model.context_window,
        "max_output": model.max_output,
        "total_context": model.total_context,
        "input_limit": limit,
        "fits": count <= limit,
        "reply_room": max(0, min(model.max_output, model.total_context - count)),
    }
    if not counter.exact:
        report["how_estimated"] = HOW_ESTIMATED
    if warnings:
        report["warnings"] = warnings
    if include_ids:
        report["ids"] = ids
    return report

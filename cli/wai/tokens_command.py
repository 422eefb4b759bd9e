"""`wai tokens`: how many tokens a text costs a model, against its windows."""

from __future__ import annotations

import json
import sys
from typing import BinaryIO

from wai.backends.registry import BackendMode, choose, windows_for
from wai.catalog import load_catalog
from wai.conversation import Message
from wai.errors import EXIT_OK, EXIT_WINDOW
from wai.models_resolve import resolve_model
from wai.notices import Notifier
from wai.prompt_input import read_prompt, valid_text
from wai.render.terminal_safe import for_terminal, json_for_terminal
from wai.settings import load_credentials, load_user_config


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
    from wai import tokens

    stream = stdin if stdin is not None else (sys.stdin.buffer if sys.stdin else None)
    prompt = read_prompt(
        text, stream, stream is None or stream.isatty(), notifier, allow_blank=raw, use_stdin=use_stdin
    )
    config = load_user_config()
    credentials = load_credentials(config)
    spec = resolve_model(model, load_catalog(), config, credentials)
    # Counting needs no credentials or weights: the backend only decides which template is used,
    # and it is the one `wai ask` would run.
    backend_name = choose(spec, backend, credentials, sending=False)
    messages: tuple[Message, ...] = (Message("user", prompt),)
    if system:
        messages = (Message("system", valid_text(system, "the system prompt", notifier)), *messages)
    spec = windows_for(spec, backend_name)
    report = tokens.count_report(spec, backend_name, text=prompt, messages=messages, raw=raw)
    if json_output:
        sys.stdout.write(
            json_for_terminal(json.dumps(report, indent=2, ensure_ascii=False), sys.stdout) + "\n"
        )
    else:
        what = "the text alone" if raw else "the prompt as sent"
        exactness = "exact" if report["exact"] else "estimated"  # counted_with says why
        verdict = (
            f"fits {spec.id}'s input limit of {report['input_limit']}, "
            f"leaving room for {report['reply_room']} reply tokens"
            if report["fits"]
            else f"over {spec.id}'s input limit of {report['input_limit']}"
        )
        lines = (
            f"{report['display']} token{'s' if report['tokens'] != 1 else ''} "
            f"({what}; {exactness}; {report['counted_with']})\n"
            f"{verdict} (context_window {spec.context_window}, max_output {spec.max_output}, "
            f"total_context {spec.total_context})\n"
        )
        sys.stdout.write(for_terminal(lines, sys.stdout))  # names from a catalog or a file
    return EXIT_OK if report["fits"] else EXIT_WINDOW

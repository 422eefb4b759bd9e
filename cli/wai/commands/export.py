"""`wai logs --export md|json ID`: one conversation as it stands (its active path) for sharing, with
each turn's model, time, usage and cost. Control characters are never written raw: Markdown shows
them as escapes (`\\x1b`), JSON as `\\u` escapes, whatever stdout is."""

from __future__ import annotations

import json
from typing import Literal, TextIO

from wai.errors import EXIT_OK, UsageError
from wai.notices import Notifier
from wai.pricing import neurons_text, usd_text
from wai.store.database import ConversationSummary, Store, StoredTurn, db_path
from wai.store.ledger import Totals, totals
from wai.terminal.safe_text import export_safe, json_export_safe

ExportFormat = Literal["md", "json"]
FORMATS: tuple[ExportFormat, ...] = ("md", "json")


def run_export(fmt: str, conversation: str, out: TextIO, notifier: Notifier) -> int:
    if fmt not in FORMATS:
        raise UsageError(f"--export takes md or json, not {fmt!r}")
    path = db_path()
    if not path.exists():
        raise UsageError(f"no conversation with id '{conversation}'", hint="nothing has been logged yet")
    with Store.for_reading(path, notifier.warn) as store:
        cid = store.resolve_conversation_id(conversation)
        summary = store.conversation(cid)
        turns = store.active_path(cid)
    summed = totals(turns)
    if fmt == "json":
        document = _document(summary, turns, summed)
        out.write(json_export_safe(json.dumps(document, indent=2, ensure_ascii=False)) + "\n")
    else:
        out.write(export_safe(_markdown(summary, turns, summed)))
    return EXIT_OK


def _forked_from(summary: ConversationSummary, turns: list[StoredTurn]) -> StoredTurn | None:
    inherited = [turn for turn in turns if turn.conversation_id != summary.id]
    return inherited[-1] if inherited else None


def _document(summary: ConversationSummary, turns: list[StoredTurn], summed: Totals) -> dict[str, object]:
    fork = _forked_from(summary, turns)
    return {
        "id": summary.id,
        "created_at": summary.created_at,
        "source": summary.source,
        "forked_from": None if fork is None else {"conversation": fork.conversation_id, "turn": fork.id},
        "turns": [_turn_dict(turn) for turn in turns],
        "total": summed.as_dict(),
    }


def _turn_dict(turn: StoredTurn) -> dict[str, object]:
    data = turn.data
    return {
        "id": turn.id,
        "created_at": turn.created_at,
        "system": data.system,
        "prompt": data.prompt,
        "reasoning": data.reasoning,
        "reply": data.reply,
        "model": data.model,
        "backend": data.backend,
        "usage": {
            "prompt_tokens": data.prompt_tokens,
            "cached_tokens": data.cached_tokens,
            "completion_tokens": data.completion_tokens,
        },
        "cost": None if data.cost_usd is None else {"usd": data.cost_usd, "neurons": data.neurons},
        "first_token_s": data.first_token_s,
        "total_s": data.total_s,
        "finish_reason": data.finish_reason,
        "error": data.error,
    }


def _markdown(summary: ConversationSummary, turns: list[StoredTurn], summed: Totals) -> str:
    lines = [f"# Conversation {summary.id}", "", f"- started: {summary.created_at}"]
    models = sorted({turn.data.model for turn in turns})
    if models:
        lines.append(f"- model: {', '.join(f'`{model}`' for model in models)}")
    cost = f", {usd_text(summed.usd)}" if summed.turns > summed.unpriced_turns else ""
    neurons = f", {neurons_text(summed.neurons)}" if summed.billed_turns else ""
    lines.append(
        f"- {summed.turns} turn{'s' if summed.turns != 1 else ''}: {summed.prompt_tokens} tokens in, "
        f"{summed.completion_tokens} out{cost}{neurons}"
    )
    fork = _forked_from(summary, turns)
    if fork is not None:
        lines.append(f"- forked from {fork.conversation_id} after its turn {fork.id}")
    system: str | None = None
    for turn in turns:
        data = turn.data
        if data.system and data.system != system:
            lines += ["", "## System", "", data.system.rstrip()]
        system = data.system
        lines += ["", f"## You ({turn.created_at})", "", data.prompt.rstrip()]
        lines += ["", f"## {data.model}", "", data.reply.rstrip() or "*(no reply)*"]
        if data.error:
            lines += ["", f"*(failed: {data.error})*"]
        elif data.finish_reason == "interrupted":
            lines += ["", "*(interrupted)*"]
        lines += ["", f"*{_facts(turn)}*"]
    return "\n".join(lines) + "\n"


def _facts(turn: StoredTurn) -> str:
    data = turn.data
    facts = [f"{data.prompt_tokens if data.prompt_tokens is not None else '?'} in"]
    if data.cached_tokens:
        facts[0] += f" ({data.cached_tokens} cached)"
    facts.append(f"{data.completion_tokens if data.completion_tokens is not None else '?'} out")
    if data.cost_usd is not None:
        facts.append(usd_text(data.cost_usd))
    if data.neurons is not None:
        facts.append(neurons_text(data.neurons))
    if data.total_s is not None:
        facts.append(f"{data.total_s:.2f} s")
    return " · ".join(facts)

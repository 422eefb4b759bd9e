"""`wai logs`: the recent conversations, or one conversation's turns, from the transcript database."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TextIO

from wai.errors import EXIT_OK, UsageError
from wai.notices import Notifier
from wai.store.database import ConversationSummary, Store, StoredTurn, db_path
from wai.terminal.safe_text import for_terminal, json_for_terminal

DEFAULT_COUNT = 10
_PREVIEW = 60


@dataclass(frozen=True, slots=True)
class LogsOptions:
    """count: how many conversations (or, with `cid`, how many of its latest turns; 0 = all)."""

    count: int = DEFAULT_COUNT
    json: bool = False
    cid: str | None = None
    usage: bool = False  # the usage ledger instead of conversations
    export: str | None = None  # md or json: one conversation for sharing
    prune_cache: bool = False  # drop the saved llama.cpp states
    conversation: str | None = None  # the ID argument (with --export)
    since: str | None = None  # with usage: default 7d
    by: str | None = None  # with usage: default day


def run_logs(options: LogsOptions, notifier: Notifier, *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    if options.count < 0:
        raise UsageError("-n must be 0 (all) or more")
    if options.conversation is not None and options.cid not in (None, options.conversation):
        raise UsageError("give the conversation once: as ID or as --cid ID")
    if options.conversation is not None and options.export is None:
        options = replace(options, cid=options.conversation)  # `wai logs ID` is `wai logs --cid ID`
    if options.prune_cache:
        from wai.backends.llama_cpp.saved_states import prune_all

        files, freed = prune_all()
        if options.json:
            out.write(json.dumps({"deleted_states": files, "freed_bytes": freed}) + "\n")
        else:
            notifier.info(f"deleted {files} saved state{'s' if files != 1 else ''} ({freed / 1e6:,.1f} MB)")
        return EXIT_OK
    if options.export is not None:
        from wai.commands.export import run_export

        given = options.conversation or options.cid
        if given is None:
            raise UsageError("--export needs the conversation's id", hint="wai logs --export md ID")
        return run_export(options.export, given, out, notifier)
    if not options.usage and (options.since is not None or options.by is not None):
        raise UsageError("--since and --by go with --usage", hint="wai logs --usage --since 7d --by model")
    if options.usage:
        from wai.commands.usage import run_usage

        if options.cid is not None:
            raise UsageError("--usage totals every conversation; leave out --cid")
        since, by = options.since or "7d", options.by or "day"
        return run_usage(since, by, as_json=options.json, out=out, notifier=notifier)
    path = db_path()
    if not path.exists():
        if options.cid is not None:
            raise UsageError(f"no conversation with id '{options.cid}'", hint="nothing has been logged yet")
        if options.json:
            out.write("[]\n")
        else:
            notifier.info("no conversations logged yet")
        return EXIT_OK
    with Store.for_reading(path, notifier.warn) as store:
        if options.cid is not None:
            cid = store.resolve_conversation_id(options.cid)
            summary = store.conversation(cid)
            standing = store.active_path(cid)
            if options.json:  # every branch, and which turns make the conversation as it stands
                turns = store.turns(cid, include_superseded=True)
                if options.count:
                    turns = turns[-options.count :]
                document = {
                    **summary.as_dict(),
                    "turns": [turn.as_dict() for turn in turns],
                    "active_path": [turn.id for turn in standing],
                }
                out.write(json_for_terminal(json.dumps(document, indent=2, ensure_ascii=False), out) + "\n")
                return EXIT_OK
            branches = {turn.id: len(store.alternatives(turn)) - 1 for turn in standing}
            if options.count:
                standing = standing[-options.count :]
            _show_conversation(out, summary, standing, branches=branches)
        else:
            limit = options.count or -1  # SQLite: LIMIT -1 is no limit
            _show_list(out, notifier, store.recent(limit), as_json=options.json)
    return EXIT_OK


def _show_list(out: TextIO, notifier: Notifier, rows: list[ConversationSummary], *, as_json: bool) -> None:
    if as_json:
        document = json.dumps([row.as_dict() for row in rows], indent=2, ensure_ascii=False)
        out.write(json_for_terminal(document, out) + "\n")
        return
    if not rows:
        notifier.info("no conversations logged yet")
        return
    # On a terminal each conversation keeps to one row: the preview gets what the row has left.
    columns = shutil.get_terminal_size().columns if out.isatty() else None
    for row in rows:
        turns = f"{row.turns} turn{'s' if row.turns != 1 else ''}"
        start = (
            f"{row.id}  {local_time(row.updated_at)}  {row.source:<4}  {short_model(row.model)}  {turns}  "
        )
        width = _PREVIEW if columns is None else max(8, columns - len(start) - 1)
        # Stored text may hold escape sequences: on a terminal they are shown as text, never run.
        out.write(for_terminal(start + preview(row.first_prompt, width), out) + "\n")


def _show_conversation(
    out: TextIO, summary: ConversationSummary, turns: list[StoredTurn], *, branches: dict[int, int]
) -> None:
    """The conversation as it stands (its active path); where a turn has alternatives, it says so."""
    parts = [f"conversation {summary.id} ({summary.source}), started {local_time(summary.created_at)}\n"]
    inherited = [turn for turn in turns if turn.conversation_id != summary.id]
    if inherited:
        parts.append(f"forked from {inherited[-1].conversation_id} after its turn {inherited[-1].id}\n")
    system: str | None = None
    for turn in turns:
        data = turn.data
        if data.system != system and data.system:
            parts.append(f"\nsystem: {data.system}\n")
        system = data.system
        # Every line of the prompt is quoted, so a pasted prompt never runs into the reply.
        quoted = "\n".join(f"> {line}" if line else ">" for line in data.prompt.rstrip("\n").split("\n"))
        parts.append(f"\n{quoted}\n\n")
        if data.reasoning.strip():
            # Indented under its label, so the thinking never reads as part of the reply.
            thinking = "\n".join(
                f"  {line}" if line else "" for line in data.reasoning.strip("\n").split("\n")
            )
            parts.append(f"thinking:\n{thinking}\n\n")
        if data.reply:
            parts.append(data.reply.rstrip("\n") + "\n")
        others = branches.get(turn.id, 0)
        branch = f" [{others} alternative{'s' if others != 1 else ''}: wai logs --json]" if others > 0 else ""
        parts.append(f"  [{turn_facts(turn)}]{branch}\n")
        # Turn by turn, so a long conversation starts showing at once.
        out.write(for_terminal("".join(parts), out))
        parts.clear()
    out.write(for_terminal("".join(parts), out))


def _figure(tokens: int | None) -> str:
    return "?" if tokens is None else str(tokens)  # unknown is not 0


def turn_facts(turn: StoredTurn) -> str:
    data = turn.data
    facts = [short_model(data.model), data.backend]
    if data.precision:
        facts.append(data.precision)
    if data.prompt_tokens is not None or data.completion_tokens is not None:
        prompt_mark = "" if data.prompt_counted_exactly else "~"
        reply_mark = "" if data.usage_exact else "~"
        prompt, reply = _figure(data.prompt_tokens), _figure(data.completion_tokens)
        facts.append(f"{prompt_mark}{prompt} in, {reply_mark}{reply} out")
    if data.cached_tokens:
        facts.append(f"{data.cached_tokens} cached")
    if data.cost_usd is not None:
        from wai.pricing import neurons_text, usd_text

        facts.append(usd_text(data.cost_usd))
        if data.neurons is not None:
            facts.append(neurons_text(data.neurons))
    if data.first_token_s is not None:
        facts.append(f"{data.first_token_s:.2f} s to first token")
    if data.interrupted:
        facts.append("interrupted")
    elif data.finish_reason:
        facts.append(data.finish_reason)
    if data.error:
        facts.append(f"error: {data.error}")
    return ", ".join(facts)


def local_time(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def short_model(model_id: str) -> str:
    """`@cf/meta/llama-2-7b-chat-fp16` -> `llama-2-7b-chat-fp16`; a .gguf path -> its file name."""
    return model_id.rstrip("/").rsplit("/", 1)[-1]


def preview(text: str, width: int = _PREVIEW) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"

"""Slash commands of `wai chat`, and their Tab completion. A command never reaches the model."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, get_args

from wai.backends.registry import backend_class, backend_names
from wai.commands.logs import preview, short_model
from wai.conversation import ReasoningEffort
from wai.errors import UsageError, WaiError
from wai.sampling import OPTIONS_BY_NAME, SAMPLING_OPTIONS, Span, span_on
from wai.wording import counted

if TYPE_CHECKING:
    from prompt_toolkit.completion import CompleteEvent, Completer, Completion
    from prompt_toolkit.document import Document

    from wai.commands.chat.session import ChatSession


def backend_modes() -> tuple[str, ...]:
    """What `/backend` takes: "auto" or a backend's name, as the registry lists them now."""
    return ("auto", *backend_names())


def _backend_usage() -> str:
    return f"[{'|'.join(backend_modes())}]"


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    usage: str | Callable[[], str]  # a callable when it names what the registry holds now
    help: str
    run: Callable[[ChatSession, str, TextIO], bool]  # True: leave the REPL

    def usage_text(self) -> str:
        return self.usage if isinstance(self.usage, str) else self.usage()


def is_command(line: str) -> bool:
    """`/name ...` is a command; `//text` sends `/text` to the model."""
    return line.startswith("/") and not line.startswith("//")


def run_command(line: str, chat: ChatSession, out: TextIO) -> bool:
    """Run one slash command; True when the REPL should end. Bad input is one line on stderr."""
    name, _, argument = line.strip()[1:].partition(" ")
    name = name.strip().lower()
    argument = argument.strip()
    command = COMMANDS.get(name) or _ALIASES.get(name)
    if command is None:
        chat.notifier.error(_unknown(name))
        return False
    try:
        return command.run(chat, argument, out)
    except WaiError as error:
        chat.notifier.error(str(error))
        return False


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(COMMANDS), n=1)
    guess = f"; did you mean /{close[0]}?" if close else ""
    return f"unknown command /{name}{guess} (/help lists the commands; // sends a line starting with /)"


def say(out: TextIO, text: str = "") -> None:
    """Write lines for a person: on a terminal, wrapped at word boundaries to its width, and with
    no control characters (the lines quote prompts, replies and model names)."""
    if out.isatty():
        import shutil
        import textwrap

        from wai.terminal.safe_text import terminal_safe

        text = terminal_safe(text)
        width = max(20, shutil.get_terminal_size().columns - 1)
        lines = []
        for line in text.split("\n"):
            indent = " " * (len(line) - len(line.lstrip(" ")))
            lines.append(
                textwrap.fill(line, width, subsequent_indent=indent + "  ", break_on_hyphens=False)
                if len(line) > width
                else line
            )
        text = "\n".join(lines)
    out.write(text + "\n")
    out.flush()


# --- the commands ---------------------------------------------------------------------------


def _help(chat: ChatSession, argument: str, out: TextIO) -> bool:
    usages = {command.name: f"/{command.name} {command.usage_text()}" for command in COMMANDS.values()}
    width = max(len(usage) for usage in usages.values())
    for command in COMMANDS.values():
        say(out, f"  {usages[command.name].ljust(width)}  {command.help}")
    say(out)
    say(out, "  Enter sends; Alt-Enter (or Esc then Enter) starts a new line; pasted text stays one message.")
    say(out, "  Ctrl-C stops a reply (the part received is kept) or clears the line; Ctrl-D leaves.")
    say(out, "  Ctrl-R searches earlier inputs; → accepts a suggestion; Tab completes commands and models.")
    return False


def _describe_model(chat: ChatSession) -> str:
    spec = chat.spec
    counted = "counted exactly" if chat.counter.exact else "estimated"
    return (
        f"{spec.id} on {chat.backend_name} (backend {chat.mode}): "
        f"input window {spec.context_window}, output window {spec.max_output}, "
        f"total context {spec.total_context}; tokens {counted}"
    )


def _model(chat: ChatSession, argument: str, out: TextIO) -> bool:
    if argument:
        chat.set_model(argument)
    say(out, _describe_model(chat))
    return False


def _backend(chat: ChatSession, argument: str, out: TextIO) -> bool:
    if argument:
        if argument not in backend_modes():
            raise UsageError(f"/backend takes one of {', '.join(backend_modes())}, not '{argument}'")
        chat.set_backend(argument)  # type: ignore[arg-type]
    say(out, _describe_model(chat))
    return False


def _system(chat: ChatSession, argument: str, out: TextIO) -> bool:
    if not argument:
        say(
            out,
            f"system prompt: {chat.system}" if chat.system else "no system prompt (/system TEXT sets one)",
        )
        return False
    if argument == "-":
        chat.set_system(None)
        say(out, "system prompt removed")
        return False
    chat.set_system(argument)
    tokens = chat.counter.count_text(argument)
    say(
        out,
        f"system prompt set ({'' if chat.counter.exact else '~'}{tokens} token{'s' if tokens != 1 else ''})",
    )
    return False


def _schema(chat: ChatSession, argument: str, out: TextIO) -> bool:
    if not argument:
        if chat.schema is None:
            say(out, "no schema: replies are free text (/schema SPEC asks for JSON that satisfies SPEC)")
        else:
            import json

            kind = "a list of objects (items)" if chat.schema.multi else "JSON"
            say(out, f"replies are {kind} held to: {json.dumps(chat.schema.document, ensure_ascii=False)}")
        return False
    if argument.lower() == "off":
        chat.set_schema(None)
        say(out, "schema off: replies are free text")
        return False
    from wai.schema import load_schema

    first, _, rest = argument.partition(" ")
    multi = first.lower() == "multi"
    spec = rest.strip() if multi else argument
    if multi and not spec:
        # Else "multi" alone would read as the concise form of one field named "multi".
        raise UsageError("/schema multi needs a SPEC", hint="e.g. /schema multi name, age int")
    chat.set_schema(load_schema(spec, multi_items=multi, option="/schema"))
    say(out, "replies are now JSON held to the schema (/schema off for free text)")
    return False


# What /set takes besides the sampling options (wai.sampling declares those, with their ranges).
_MAX_TOKENS_HELP = "most reply tokens (capped by the model's output window)"
_EFFORTS: tuple[ReasoningEffort, ...] = get_args(ReasoningEffort)
_EFFORT_HELP = "how long a reasoning model thinks: " + ", ".join(_EFFORTS)
_RESET = ("default", "none", "off")


def _setting_help(chat: ChatSession) -> dict[str, str]:
    """Every /set name and what it takes on the session's backend (Workers AI's ranges are its own)."""
    ranges = backend_class(chat.backend_name).sampling_ranges
    return {
        **{option.name: option.describe(span_on(option, ranges)) for option in SAMPLING_OPTIONS},
        "max_tokens": _MAX_TOKENS_HELP,
        "reasoning_effort": _EFFORT_HELP,
    }


def _settings_line(chat: ChatSession) -> str:
    sampling = {option.name: getattr(chat.sampling, option.name) for option in SAMPLING_OPTIONS}
    # The penalties come last, after the reply's length and effort, as the line has always read.
    penalties = {name: value for name, value in sampling.items() if name.endswith("_penalty")}
    values: dict[str, object] = {
        **{name: value for name, value in sampling.items() if name not in penalties},
        "max_tokens": chat.max_tokens,
        "reasoning_effort": chat.reasoning_effort,
        **penalties,
    }
    return ", ".join(f"{k} {'default' if v is None else v}" for k, v in values.items())


def _set(chat: ChatSession, argument: str, out: TextIO) -> bool:
    if not argument:
        say(out, _settings_line(chat))
        return False
    name, _, raw = argument.partition(" ")
    name, raw = name.strip().lower(), raw.strip()
    if name == "reasoning_effort":
        _set_effort(chat, raw.lower())
    elif name == "max_tokens":
        _set_max_tokens(chat, raw)
    elif name in OPTIONS_BY_NAME:
        option = OPTIONS_BY_NAME[name]
        span = span_on(option, backend_class(chat.backend_name).sampling_ranges)
        value = _number(name, raw, option.kind, span, option.describe(span))
        chat.set_sampling(chat.with_sampling(**{name: value}))
    else:
        raise UsageError(f"/set knows {', '.join(_setting_help(chat))}; not '{name}'")
    say(out, _settings_line(chat))
    return False


def _number(name: str, raw: str, kind: type[float] | type[int], span: Span, what: str) -> float | int | None:
    """The value `/set NAME RAW` gives, None for 'default'; a usage error when it is no such number."""
    if not raw:
        raise UsageError(f"/set {name} VALUE: {what} (or 'default')")
    if raw.lower() in _RESET:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise UsageError(f"/set {name}: '{raw}' is not a {'whole ' if kind is int else ''}number") from None
    if not span.holds(value):
        raise UsageError(f"/set {name}: {raw} is out of range ({what})")
    return value


def _set_max_tokens(chat: ChatSession, raw: str) -> None:
    value = _number("max_tokens", raw, int, Span(1), _MAX_TOKENS_HELP)
    cap = chat.spec.max_output
    if value is not None and value > cap:
        chat.notifier.warn(
            f"{chat.spec.id} stops at {counted(cap, 'token')} per reply: max_tokens set to {cap}"
        )
        value = cap
    chat.set_max_tokens(None if value is None else int(value))


def _set_effort(chat: ChatSession, raw: str) -> None:
    if raw in _RESET:
        chat.set_reasoning_effort(None)
    elif raw in _EFFORTS:
        chat.set_reasoning_effort(raw)  # type: ignore[arg-type]
    else:
        raise UsageError(f"/set reasoning_effort {'|'.join(_EFFORTS)}: {_EFFORT_HELP} (or 'default')")


def _clear(chat: ChatSession, argument: str, out: TextIO) -> bool:
    chat.clear()
    say(out, "new conversation")
    return False


def _retry(chat: ChatSession, argument: str, out: TextIO) -> bool:
    chat.retry()
    return False


def _undo(chat: ChatSession, argument: str, out: TextIO) -> bool:
    taken = chat.undo()
    if taken is not None:
        say(out, f"took out: {preview(taken.prompt, 50)} (the transcript keeps it)")
    return False


def _edit(chat: ChatSession, argument: str, out: TextIO) -> bool:
    if not argument.strip():
        raise UsageError("/edit TEXT: the message to send instead of the last one")
    chat.edit(argument)
    return False


def _alt(chat: ChatSession, argument: str, out: TextIO) -> bool:
    """`/alt` lists the alternatives of the last exchange; `/alt N` makes the N-th the conversation's."""
    choices = chat.alternatives()
    if len(choices) < 2:
        say(out, "the last reply has no alternatives (/retry or /edit make some)")
        return False
    current = chat.turns[-1].stored_id
    if not argument.strip():
        for number, turn in enumerate(choices, 1):
            mark = "*" if turn.id == current else " "
            say(out, f"{mark}{number}. {preview(turn.data.prompt, 30)} -> {preview(turn.data.reply, 60)}")
        say(out, "/alt N switches to one")
        return False
    try:
        chosen = choices[int(argument) - 1]
        if int(argument) < 1:
            raise IndexError
    except (ValueError, IndexError):
        raise UsageError(f"/alt N: a number from 1 to {len(choices)}, not '{argument.strip()}'") from None
    chat.switch_to(chosen)
    say(out, f"now: {preview(chosen.data.reply, 70)}")
    return False


def _fork(chat: ChatSession, argument: str, out: TextIO) -> bool:
    chat.fork()
    count = len(chat.turns)
    say(out, f"new conversation from here ({count} turn{'s' if count != 1 else ''} carried over)")
    return False


def _budget(chat: ChatSession, argument: str, out: TextIO) -> bool:
    for line in budget_lines(chat):
        say(out, line)
    return False


def budget_lines(chat: ChatSession) -> list[str]:
    """Tokens used against each window, and which turns the window policy drops next."""
    # The windows the turns are planned within: locally, within what the model's file was trained on.
    spec, counter = chat.windows, chat.counter
    mark = "" if counter.exact else "~"
    used = chat.context_used()
    limit = chat.input_limit()
    percent = round(100 * used / spec.context_window)
    parts = ["the system prompt"] if chat.system else []
    if chat.turns:
        parts.append(f"{len(chat.turns)} turn{'s' if len(chat.turns) != 1 else ''}")
    what = " and ".join(parts) or "nothing yet"
    lines = [
        f"model    {spec.id} on {chat.backend_name} ({'exact' if counter.exact else 'estimated'} counts)",
        f"input    {mark}{used} of {spec.context_window} tokens ({percent}%): {what}",
        f"output   up to {min(chat.max_tokens or spec.max_output, spec.max_output)} tokens a reply "
        f"(window {spec.max_output}); prompt and reply together at most {spec.total_context}",
    ]
    for number, turn in enumerate(chat.turns, 1):
        size = counter.count_prompt(turn.messages())
        flag = " (interrupted)" if turn.interrupted else ""
        lines.append(f"  turn {number:>2}  {mark}{size:>6} tokens  {preview(turn.prompt, 50)}{flag}")
    if not chat.turns:
        return lines
    try:
        plan = chat.plan_next()
    except WaiError as error:
        lines.append(f"next     even a short message would be refused: {error.message}")
        return lines
    if plan.dropped_turns:
        dropped = plan.dropped_turns
        lines.append(
            f"next     the next message drops the oldest {dropped} turn{'s' if dropped != 1 else ''} "
            f"(turn{'s 1-' if dropped != 1 else ' '}{dropped if dropped != 1 else 1})"
        )
    else:
        room = max(0, limit - used)
        lines.append(
            f"next     nothing is dropped until the conversation passes {counted(limit, 'token')}; "
            f"a message of more than {mark}{counted(room, 'token')} drops turn 1 first"
        )
    return lines


def _save(chat: ChatSession, argument: str, out: TextIO, *, overwrite: bool = False) -> bool:
    if not argument:
        raise UsageError("/save FILE: where to write the conversation (Markdown)")
    path = Path(argument).expanduser()
    try:
        # "x" refuses an existing file in the same call that creates it, as a shell's noclobber.
        with path.open("w" if overwrite else "x", encoding="utf-8") as handle:
            handle.write(conversation_markdown(chat))
    except FileExistsError:
        raise UsageError(
            f"{path} already exists; nothing written", hint=f"/save! {argument} replaces it"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    count = len(chat.turns)
    say(out, f"saved {count} turn{'s' if count != 1 else ''} to {path}")
    return False


def _save_over(chat: ChatSession, argument: str, out: TextIO) -> bool:
    return _save(chat, argument, out, overwrite=True)


def conversation_markdown(chat: ChatSession) -> str:
    lines = ["# Conversation", ""]
    if chat.log.conversation_id:
        lines.append(f"- id: `{chat.log.conversation_id}`")
    lines.append(f"- model: `{chat.spec.id}`")
    lines.append(f"- saved: {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    if chat.system:
        lines += ["", "## System", "", chat.system.rstrip()]
    for turn in chat.turns:
        lines += ["", "## You", "", turn.prompt.rstrip(), "", f"## {short_model(turn.model)}", ""]
        lines.append(turn.reply.rstrip() or "*(no reply)*")
        if turn.interrupted:
            lines += ["", "*(interrupted)*"]
        elif turn.error:
            lines += ["", f"*(incomplete: {turn.error})*"]
    return "\n".join(lines) + "\n"


def _history(chat: ChatSession, argument: str, out: TextIO) -> bool:
    if not chat.turns:
        say(out, "no turns yet")
        return False
    for number, turn in enumerate(chat.turns, 1):
        flag = " [interrupted]" if turn.interrupted else ""
        say(out, f"{number:>3}  you: {preview(turn.prompt, 70)}")
        say(out, f"     {short_model(turn.model)}: {preview(turn.reply, 70)}{flag}")
    return False


def _exit(chat: ChatSession, argument: str, out: TextIO) -> bool:
    return True


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "", "this list", _help),
        Command("model", "[ID]", "show or switch the model (Tab lists them)", _model),
        Command("backend", _backend_usage, "show or switch where the model runs", _backend),
        Command("system", "[TEXT|-]", "show, set, or remove (-) the system prompt", _system),
        Command(
            "set",
            "[NAME VALUE]",
            "temperature, top_p, top_k, seed, max_tokens, reasoning_effort, penalties ('default' resets)",
            _set,
        ),
        Command(
            "schema",
            "[SPEC|multi SPEC|off]",
            "show, set or turn off the JSON schema replies must satisfy",
            _schema,
        ),
        Command("clear", "", "start a new conversation", _clear),
        Command("retry", "", "regenerate the last reply (the earlier one stays, see /alt)", _retry),
        Command("undo", "", "take the last exchange out of the conversation", _undo),
        Command("edit", "TEXT", "replace the last message with TEXT and answer again", _edit),
        Command("alt", "[N]", "the alternatives of the last reply; switch to the N-th", _alt),
        Command("fork", "", "go on in a new conversation from here", _fork),
        Command("budget", "", "tokens used against each window; what is dropped next", _budget),
        Command("save", "FILE", "write the conversation to FILE as Markdown (/save! replaces a file)", _save),
        Command("history", "", "the turns of this conversation", _history),
        Command("exit", "", "leave (Ctrl-D does too)", _exit),
    )
}
_ALIASES: dict[str, Command] = {
    "quit": COMMANDS["exit"],
    "q": COMMANDS["exit"],
    "?": COMMANDS["help"],
    "save!": Command("save!", "FILE", "write the conversation to FILE, replacing it", _save_over),
}


# --- completion -----------------------------------------------------------------------------


def make_completer(chat: ChatSession) -> Completer:
    """A prompt-toolkit completer for slash commands, their arguments, and model ids."""
    from prompt_toolkit.completion import Completer, Completion, PathCompleter
    from prompt_toolkit.document import Document

    paths = PathCompleter(expanduser=True)

    class SlashCompleter(Completer):
        def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
            text = document.text_before_cursor
            if not is_command(text) or "\n" in text:
                return
            if " " not in text:
                typed = text[1:].lower()
                for command in COMMANDS.values():
                    if command.name.startswith(typed):
                        yield Completion(
                            f"/{command.name}{' ' if command.usage else ''}",
                            start_position=-len(text),
                            display=f"/{command.name}",
                            display_meta=command.help,
                        )
                return
            name, _, argument = text[1:].partition(" ")
            argument = argument.lstrip()
            name = name.lower()
            if name == "model":
                yield from _model_completions(chat, argument)
            elif name == "backend":
                yield from _word_completions(argument, {m: "" for m in backend_modes()})
            elif name == "set" and " " not in argument:
                yield from _word_completions(argument, _setting_help(chat))
            elif name in ("save", "save!"):
                sub = Document(argument, len(argument))
                yield from paths.get_completions(sub, complete_event)

    return SlashCompleter()


def _word_completions(typed: str, words: dict[str, str]) -> Iterable[Completion]:
    from prompt_toolkit.completion import Completion

    for word, meta in words.items():
        if word.startswith(typed.lower()):
            yield Completion(word, start_position=-len(typed), display_meta=meta)


def _model_completions(chat: ChatSession, typed: str) -> Iterable[Completion]:
    from prompt_toolkit.completion import Completion

    needle = typed.lower()
    for spec in chat.catalog:
        names = (spec.id, *spec.aliases)
        if not any(needle in name.lower() for name in names):
            continue
        meta = f"in {spec.context_window} · out {spec.max_output}"
        if not spec.remote:
            meta += " · local"
        yield Completion(spec.id, start_position=-len(typed), display_meta=meta)
    from wai.backends.openai.models import provider_completions

    for name, meta in provider_completions(chat.config.providers(), set(chat.catalog.models)):
        if needle in name.lower():
            yield Completion(name, start_position=-len(typed), display_meta=meta)

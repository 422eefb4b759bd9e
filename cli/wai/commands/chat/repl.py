"""`wai chat`: a prompt-toolkit session around ChatSession.

prompt-toolkit owns the terminal only while it reads a message; a reply streams through the same
sink as `wai ask` once `prompt()` has returned, so the two never draw at the same time.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from wai.commands.chat.commands import is_command, make_completer, run_command, say
from wai.commands.chat.session import ChatOptions, ChatSession
from wai.commands.logs import short_model
from wai.commands.prompt_input import valid_text
from wai.errors import EXIT_OK, UsageError, WaiError
from wai.notices import Notifier
from wai.render.choose import plain_style
from wai.settings import cannot_write, os_reason, wai_home
from wai.store.database import create_private
from wai.store.transcript import TranscriptLog
from wai.terminal import stop_signals

if TYPE_CHECKING:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.buffer import Buffer
    from prompt_toolkit.completion import Completer
    from prompt_toolkit.formatted_text import FormattedText
    from prompt_toolkit.history import History
    from prompt_toolkit.styles import StyleTransformation

__all__ = ["ChatOptions", "run_chat"]

HISTORY_FILE = "chat_history"


def run_chat(
    options: ChatOptions,
    notifier: Notifier,
    *,
    stdout: TextIO | None = None,
    pt_input: Any = None,
    pt_output: Any = None,
) -> int:
    """Run the REPL until /exit or Ctrl-D; 0 then. Startup failures raise WaiError (exit 2 mostly).

    `pt_input`/`pt_output` replace the terminal (prompt-toolkit Input/Output), for tests.
    """
    if pt_input is None and not sys.stdin.isatty():
        raise UsageError(
            "wai chat needs a terminal on stdin",
            hint='for piped or scripted input use `wai ask`, e.g. `... | wai ask "PROMPT"`',
        )
    out = stdout or sys.stdout
    if pt_output is None and not out.isatty():
        # The prompt is redrawn as you type: a pipe or a file would get every redraw.
        raise UsageError(
            "wai chat needs a terminal on stdout",
            hint="for a plain transcript use /save FILE in the chat, or `wai logs --cid ID > FILE` after it",
        )
    if options.system:
        options = replace(options, system=valid_text(options.system, "the system prompt", notifier))
    log = TranscriptLog(notifier, source="chat", record=options.log)
    kept = modes_kept(sys.stdin, out) if pt_input is None else contextlib.nullcontext()
    try:
        with kept:
            chat = ChatSession(options, notifier, log, out=out)
            try:
                if pt_input is None:
                    chat.during_reply = lambda: keyboard_quiet(sys.stdin)
                history = _history(notifier, log)
                session = _prompt_session(chat, options, history, pt_input, pt_output)
                threading.Thread(target=chat.warm_up, name="wai-warm-up", daemon=True).start()
                _banner(chat, out)
                _loop(chat, session, out)
            finally:
                chat.close()
    finally:
        log.close()
    return EXIT_OK


def _banner(chat: ChatSession, out: TextIO) -> None:
    if chat.continued is not None:
        count = len(chat.turns)
        say(out, f"continuing conversation {chat.continued.id} ({count} turn{'s' if count != 1 else ''})")
    say(out, f"wai chat with {chat.spec.id} on {chat.backend_name}: /help for commands, Ctrl-D to leave")


def _loop(chat: ChatSession, session: PromptSession[str], out: TextIO) -> None:
    draft = ""  # a message stopped before its reply began comes back to the prompt, to resend or edit
    while True:
        try:
            text = session.prompt(prompt_message(chat), default=draft)
        except KeyboardInterrupt:
            if stop_signals.received():
                return  # SIGTERM or SIGHUP: leave
            draft = ""
            continue  # Ctrl-C at the prompt: a fresh, empty line
        except EOFError:
            return  # Ctrl-D on an empty line
        draft = ""
        if not text.strip():
            continue
        try:
            if is_command(text):
                if run_command(text, chat, out):
                    return
                continue
            chat.send(text[1:] if text.startswith("//") else text)
            if chat.stopped_before_reply:
                draft = text
        except KeyboardInterrupt:  # while a local model loaded, say
            chat.notifier.warn("interrupted")
            draft = text
        except WaiError as error:
            chat.notifier.error(str(error))
        if stop_signals.received():
            return  # SIGTERM or SIGHUP stopped the reply like Ctrl-C (kept), then wai leaves


def prompt_message(chat: ChatSession) -> FormattedText:
    """The model, and how much of its input window the conversation already uses."""
    from prompt_toolkit.formatted_text import FormattedText

    used = chat.context_used()
    window = chat.spec.context_window
    mark = "" if chat.counter.exact else "~"
    if used > chat.input_limit():
        level = "class:usage.over"
    elif used > 0.8 * window:
        level = "class:usage.high"
    else:
        level = "class:usage"
    import shutil

    model = short_model(chat.spec.id)
    # On a narrow terminal the model's name would leave too little room to type; /model shows it.
    if shutil.get_terminal_size().columns < 2 * len(model) + 24:
        model = model[:12] + "…" if len(model) > 13 else model
    return FormattedText(
        [
            ("class:model", model),
            ("", " "),
            (level, f"{mark}{used}/{window}"),
            ("class:arrow", " > "),
        ]
    )


def _history(notifier: Notifier, log: TranscriptLog) -> History:
    """The input history, kept in $WAI_HOME. Where nothing can be written there the chat goes on
    with what history there is (read, never added to) and without a transcript, and says so."""
    from prompt_toolkit.history import FileHistory

    class ReadOnlyHistory(FileHistory):
        def store_string(self, string: str) -> None:
            pass

    home = wai_home()
    path = home / HISTORY_FILE
    problem = cannot_write(home)
    if problem is not None:
        lost = "no input history and no transcript" if log.record else "no input history"
        notifier.warn(f"cannot write in {home} ({problem}): this chat keeps {lost}")
        log.record = False
        return ReadOnlyHistory(str(path))
    try:
        create_private(path)  # what was typed is as private as the transcripts
        with path.open("ab"):
            pass
    except OSError as exc:
        notifier.warn(f"cannot write {path} ({os_reason(exc)}): this chat keeps no input history")
        return ReadOnlyHistory(str(path))
    return FileHistory(str(path))


def _prompt_session(
    chat: ChatSession, options: ChatOptions, history: History, pt_input: Any, pt_output: Any
) -> PromptSession[str]:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.application.current import get_app
    from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
    from prompt_toolkit.styles import Style

    bindings = KeyBindings()
    completer = make_completer(chat)

    # Completion only ever helps on a slash command; elsewhere it would only reserve screen
    # space for a menu under every prompt.
    slash_line = Condition(lambda: get_app().current_buffer.text.startswith("/"))

    @bindings.add("tab", filter=slash_line)
    def _complete(event: KeyPressEvent) -> None:
        complete_now(event.current_buffer, completer)

    # Alt-Enter arrives as Esc then Enter; either way it is a newline, and Enter alone sends.
    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    style = Style.from_dict(
        {
            "model": "bold",
            "usage": "",
            "usage.high": "ansiyellow",
            "usage.over": "ansired bold",
            "arrow": "bold",
            "continuation": "ansibrightblack",
        }
    )
    session: PromptSession[str] = PromptSession(
        history=history,
        auto_suggest=AutoSuggestFromHistory(),
        completer=completer,
        complete_while_typing=slash_line,
        key_bindings=bindings,
        vi_mode=options.vi,
        multiline=False,
        prompt_continuation=_continuation,
        style=style,
        include_default_pygments_style=False,
        style_transformation=_unstyled() if plain_style(options.color) else None,
        input=pt_input,
        output=pt_output,
    )
    return session


def _unstyled() -> StyleTransformation:
    """`--color never` and NO_COLOR: no colour, bold, dim or underline. Reverse video stays: it
    is how the selected completion shows."""
    from prompt_toolkit.styles import DEFAULT_ATTRS, Attrs, StyleTransformation

    class Unstyled(StyleTransformation):
        def transform_attrs(self, attrs: Attrs) -> Attrs:
            return DEFAULT_ATTRS._replace(reverse=attrs.reverse)

    return Unstyled()


def complete_now(buffer: Buffer, completer: Completer) -> None:
    """Tab on a slash command completes at once, not in the background as prompt-toolkit does,
    so `/bud<Tab><Enter>` typed (or pasted) quickly runs /budget rather than sending `/bud`."""
    from prompt_toolkit.completion import CompleteEvent, get_common_complete_suffix

    if buffer.complete_state is not None:  # the menu is open: Tab picks the next entry
        buffer.complete_next()
        return
    document = buffer.document
    found = list(completer.get_completions(document, CompleteEvent(completion_requested=True)))
    if len(found) == 1:
        buffer.apply_completion(found[0])
    elif found:
        common = get_common_complete_suffix(document, found)
        if common:
            buffer.insert_text(common)
        buffer.start_completion(select_first=False)


def _continuation(width: int, line_number: int, wrap_count: int) -> FormattedText:
    from prompt_toolkit.formatted_text import FormattedText

    return FormattedText([("class:continuation", "." * max(width - 1, 0) + " ")])


def _terminal_modes(stream: TextIO) -> tuple[ModuleType, int, list[Any]] | None:
    """termios, the stream's descriptor and its current modes; None where there are none to change."""
    try:
        import termios
    except ImportError:
        return None
    try:
        fd = stream.fileno()
        return termios, fd, termios.tcgetattr(fd)
    except (OSError, ValueError, termios.error):
        return None


@contextlib.contextmanager
def modes_kept(stream: TextIO, out: TextIO) -> Iterator[None]:
    """However the chat ends (a SIGTERM in the middle of prompt-toolkit's raw mode, say), the
    terminal gets back the modes it had when the chat began, and a signal shows the cursor."""
    modes = _terminal_modes(stream)
    if modes is None:  # not a POSIX terminal: nothing to keep
        yield
        return
    termios, fd, saved = modes
    try:
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        if stop_signals.received():
            with contextlib.suppress(OSError, ValueError):
                out.write("\x1b[?25h")
                out.flush()


@contextlib.contextmanager
def keyboard_quiet(stream: TextIO) -> Iterator[None]:
    """While a reply streams, keys typed are not echoed into it; Ctrl-C still interrupts.

    What is typed meanwhile stays queued and reaches the next prompt.
    """
    modes = _terminal_modes(stream)
    if modes is None:  # not a POSIX terminal: nothing to quiet
        yield
        return
    termios, fd, saved = modes
    quiet = list(saved)
    quiet[3] = quiet[3] & ~termios.ECHO
    try:
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        yield
    finally:
        with contextlib.suppress(termios.error, OSError):
            termios.tcsetattr(fd, termios.TCSANOW, saved)

"""Where the prompt comes from: the argument, stdin, or both (argument, blank line, stdin)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, BinaryIO

from wai.errors import UsageError

if TYPE_CHECKING:
    from wai.notices import Notifier

STDIN_ONLY = "-"

PROMPT_RULE = (
    "PROMPT alone is the prompt. When stdin is not a terminal it is read too: with a PROMPT the "
    "prompt is PROMPT, a blank line, then stdin; with '-' (or no PROMPT) it is stdin alone. "
    "--no-stdin never reads stdin (in a `while read` loop, say)."
)

# After this long without a byte from a pipe, a prompt argument's user may not know wai waits.
SILENCE_NOTE_AFTER = 2.0
SILENCE_NOTE = (
    "waiting for stdin, which is not a terminal: it is read after the prompt argument (--no-stdin ignores it)"
)


def read_prompt(
    argument: str | None,
    stdin: BinaryIO | None,
    stdin_is_tty: bool,
    notifier: Notifier | None = None,
    *,
    allow_blank: bool = False,
    use_stdin: bool = True,
) -> str:
    """Join the argument and stdin by the documented rule; refuse an empty prompt.

    `allow_blank` accepts blank and empty text (counting it is still a fair question).
    `use_stdin` False (`--no-stdin`) leaves stdin unread: the argument is the whole prompt.
    """
    if argument is not None:
        argument = valid_text(argument, "the prompt argument", notifier)
    if not use_stdin and argument in (None, STDIN_ONLY):
        raise UsageError("--no-stdin leaves no prompt", hint="pass the prompt as an argument")
    piped = None
    if use_stdin and stdin is not None and not stdin_is_tty:
        piped = read_stdin(stdin, notifier, argument_given=argument not in (None, STDIN_ONLY))
    if argument == STDIN_ONLY:
        if piped is None:
            raise UsageError("'-' reads the prompt from stdin, but stdin is a terminal", hint="pipe text in")
        prompt = piped
    elif argument is None:
        if piped is None:
            raise UsageError("no prompt given", hint="pass it as an argument or pipe it on stdin")
        prompt = piped
    else:
        prompt = f"{argument}\n\n{piped}" if piped and piped.strip() else argument
    if not allow_blank and not prompt.strip():
        raise UsageError("the prompt is empty", hint="pass some text as an argument or on stdin")
    return prompt


def read_stdin(stdin: BinaryIO, notifier: Notifier | None, *, argument_given: bool) -> str:
    """All of stdin as text. With a prompt argument and a silent pipe, say once (on a terminal)
    that wai is waiting for it: `sleep 30 | wai ask hi` would otherwise just hang."""
    timer: threading.Timer | None = None
    if argument_given and notifier is not None and _is_terminal(notifier):
        timer = threading.Timer(SILENCE_NOTE_AFTER, notifier.info, args=(SILENCE_NOTE,))
        timer.daemon = True
        timer.start()
    try:
        data = stdin.read(1)  # the first byte ends the silence
        if timer is not None:
            timer.cancel()
        data += stdin.read()
    finally:
        if timer is not None:
            timer.cancel()
    return decode_utf8(data, "stdin", notifier)


def decode_utf8(data: bytes, what: str, notifier: Notifier | None) -> str:
    """`data` as text; bytes that are not UTF-8 become U+FFFD, and the user is told how many."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    bad = sum(0xDC80 <= ord(char) <= 0xDCFF for char in data.decode("utf-8", errors="surrogateescape"))
    if notifier is not None:
        notifier.warn(
            f"{what} is not valid UTF-8: {bad} byte{'s' if bad != 1 else ''} replaced with U+FFFD (�)"
        )
    return data.decode("utf-8", errors="replace")


def valid_text(text: str, what: str, notifier: Notifier | None) -> str:
    """A command-line argument as text: bytes that were not UTF-8 (which Python keeps as lone
    surrogates, and which nothing can later encode) become U+FFFD, with a warning."""
    if not any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        return text
    try:
        raw = text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no byte became: nothing to count
        raw = text.encode("utf-8", errors="replace")
    return decode_utf8(raw, what, notifier)


def _is_terminal(notifier: Notifier) -> bool:
    try:
        return notifier.stream.isatty()
    except (ValueError, OSError):
        return False

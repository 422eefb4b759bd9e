"""Where the prompt comes from: the argument, stdin, or both (argument, blank line, stdin)."""

from __future__ import annotations

from typing import BinaryIO

from wai.errors import UsageError

STDIN_ONLY = "-"

PROMPT_RULE = (
    "PROMPT alone is the prompt. When stdin is not a terminal it is read too: with a PROMPT the "
    "prompt is PROMPT, a blank line, then stdin; with '-' (or no PROMPT) it is stdin alone."
)


def read_prompt(
    argument: str | None, stdin: BinaryIO | None, stdin_is_tty: bool, *, allow_blank: bool = False
) -> str:
    """Join the argument and stdin by the documented rule; refuse an empty prompt.

    `allow_blank` accepts blank and empty text (counting it is still a fair question).
    """
    piped = None
    if stdin is not None and not stdin_is_tty:
        piped = stdin.read().decode("utf-8", errors="replace")
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

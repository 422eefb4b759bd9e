"""Text from a model, a server, a file or the transcript log, made safe to show on a terminal.

A reply or a stored prompt may hold escape sequences (by accident or by design): cursor moves that
corrupt the screen, a window title, OSC 52 writing the user's clipboard. On a terminal wai shows
text, never control sequences; into a pipe or a file the text stays byte for byte. Every path that
writes such text (the panel, plain replies, `wai logs`, the REPL's lines, stderr notices, JSON)
goes through this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TextIO


class _Pattern:
    """A regular expression compiled when first used: a command that cleans no text (`--help`)
    does not pay for compiling these at start-up."""

    __slots__ = ("_compiled", "_source")

    def __init__(self, source: str) -> None:
        self._source = source
        self._compiled: re.Pattern[str] | None = None

    def sub(self, replacement: str | Callable[[re.Match[str]], str], text: str) -> str:
        if self._compiled is None:
            self._compiled = re.compile(self._source)
        return self._compiled.sub(replacement, text)


# Escape sequences go whole (an OSC's payload is a window title or a clipboard write, not words):
# OSC to BEL or ST, CSI by ESC [ or by its C1 form.
_ESCAPES = _Pattern(r"\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?")
# Then C0 controls but tab and newline, DEL, and C1 controls (a lone ESC among them).
_CONTROLS = _Pattern("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Unicode's Bidi_Control characters: marks, embeddings, overrides and isolates that reorder the
# text after them on screen, so a line can read one way and say another ("Trojan Source"). A
# terminal shows each as its escape (`\u202e`): seen, never acted on, and kept in what it shows.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Unicode's tag characters (U+E0000-U+E007F) are invisible and spell out ASCII: a reply can carry
# a whole hidden sentence in them ("ASCII smuggling") that the terminal shows as nothing and a copy
# takes along. Their one visible use, a subdivision flag (🏴 then tags then CANCEL TAG), is kept.
_TAGS = "\U000e0000-\U000e007f"
_FLAG = "\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f"
_SHOWN_ESCAPED = _Pattern(f"({_FLAG})|[{_BIDI}{_TAGS}]")
# In a log line nothing may start a new line or act on the terminal: every control character,
# the Unicode line and paragraph separators, the marks that reorder text on screen, the tags.
_LOG_CONTROLS = _Pattern(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}{_TAGS}]")
# What still breaks a line after terminal_safe: a newline and Unicode's line and paragraph separators.
_LINE_BREAKS = _Pattern("[\n\u2028\u2029]")
# What JSON leaves unescaped of those: it escapes C0 itself, but not DEL, C1, bidi controls or tags.
_JSON_RAW_CONTROLS = _Pattern(f"[\x7f-\x9f{_BIDI}{_TAGS}]")
# A shared file holds none of them raw, nor the line and paragraph separators (as export_safe).
_JSON_EXPORT_RAW = _Pattern(f"[\x7f-\x9f\u2028\u2029{_BIDI}{_TAGS}]")


def terminal_safe(text: str) -> str:
    """`text` without escape sequences or other control characters, its bidi controls and tag
    characters shown as escapes (`\\u202e`, `\\U000e0041`); a CRLF becomes a newline, a lone CR is
    dropped. Text that arrives in pieces (a streamed reply) may leave the payload of a sequence cut
    between two pieces as text, never as a sequence."""
    cleaned = _CONTROLS.sub("", _ESCAPES.sub("", text.replace("\r\n", "\n")))
    return _SHOWN_ESCAPED.sub(_escape, cleaned)


def _escape(match: re.Match[str]) -> str:
    if match.lastindex:  # a subdivision flag, shown as the flag it is
        return match.group()
    code = ord(match.group())
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_line(text: str) -> str:
    """`text` as one line on a terminal: terminal_safe, and what would break the line (a newline
    in a name or a path the message quotes) shown as its escape (`\\x0a`), so the line says what
    it quotes and nothing after the break can pass for a line of wai's own."""
    return _LINE_BREAKS.sub(_escape, terminal_safe(text))


def log_safe(text: str) -> str:
    """A field of a log line written by a server (a request's path, say): its control characters
    shown as escapes (`\\x0a`, `\\x1b`, `\\u202e`), so one request makes one line and moves nothing."""
    return _LOG_CONTROLS.sub(_escape, text)


# What a shared file (an export) never holds raw: every control character but tab and newline, the
# Unicode line and paragraph separators, the marks that reorder text, the tags.
_EXPORT_CONTROLS = _Pattern(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}{_TAGS}]")


def export_safe(text: str) -> str:
    """Text for a file meant to be shared (`wai logs --export md`): its lines and tabs as they are
    (a CRLF a newline), every other control character shown as its escape (`\\x1b`, `\\u202e`)."""
    return _EXPORT_CONTROLS.sub(_escape, text.replace("\r\n", "\n"))


def json_export_safe(document: str) -> str:
    """A JSON document with DEL, C1, the line and paragraph separators, bidi controls and tags
    written as \\u escapes wherever it goes (JSON escapes C0 itself): the same data, nothing raw
    for a reader's terminal or editor to act on."""
    return _JSON_EXPORT_RAW.sub(lambda match: _json_escape(match.group()), document)


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed, or not a real stream
        return False


def for_terminal(text: str, stream: TextIO) -> str:
    """`text` as it may be written to `stream`: cleaned on a terminal, untouched anywhere else."""
    return terminal_safe(text) if is_terminal(stream) else text


def json_for_terminal(document: str, stream: TextIO) -> str:
    """A JSON document for `stream`: on a terminal DEL, C1 and bidi controls are written as \\u escapes,
    so the data stays the same and the terminal has nothing to act on."""
    if not is_terminal(stream):
        return document
    return _JSON_RAW_CONTROLS.sub(lambda match: _json_escape(match.group()), document)


def _json_escape(character: str) -> str:
    """JSON's own escape of one character: a surrogate pair beyond the BMP."""
    code = ord(character)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"

"""The tokens of a templated prompt: the template's control tokens parsed, the messages' text never.

llama.cpp's tokenizer parses special-token text either everywhere in a text or nowhere. A prompt
needs both: the chat template writes control tokens (`<|im_start|>`, `<s>`) that must be parsed,
while a message that spells one (`<|im_end|>` in a pasted document) must stay text, or piped text
could end the user's turn and open a system turn of its own.

So the prompt is rendered twice: as it is, and with a marker in place of each message's text,
which shows where the template's own text lies. The prompt is split at the control tokens found
in the template's text, the way llama.cpp splits a text (longest token first, whitespace stripped
where a token asks for it), and each stretch between two of them, message text included, is
tokenized as plain text in one call. Without a control token's text in any message, the tokens
are exactly those of llama.cpp's own parse of the whole prompt.
"""

from __future__ import annotations

import re
import secrets
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from wai.conversation import Message
from wai.errors import ChatTemplateError

if TYPE_CHECKING:
    from wai.llama.native import NativeModel

Render = Callable[[Sequence[Message]], str]
Span = tuple[int, int]

# llama_token_attr: what llama.cpp parses only when asked to parse special tokens, and how a
# token eats the whitespace beside it.
_ATTR_UNKNOWN, _ATTR_CONTROL, _ATTR_LSTRIP, _ATTR_RSTRIP = 1 << 0, 1 << 3, 1 << 7, 1 << 8
_SPECIAL = _ATTR_UNKNOWN | _ATTR_CONTROL
_C_SPACE = " \t\n\v\f\r"  # C's isspace, as llama.cpp strips


def prompt_tokens(model: NativeModel, messages: Sequence[Message], render: Render) -> list[int]:
    """The tokens of `render(messages)`, no BOS added: control tokens only where the template wrote them."""
    text = render(messages)
    spans = message_spans(messages, render, text)
    if spans is None:
        # The template treats messages in a way the markers cannot follow. Parsing the whole text
        # is then right only while no message spells a control token.
        _refuse_control_text(model, messages)
        return model.tokenize(text, add_special=False, parse_special=True)
    tokens: list[int] = []
    for fragment in _fragments(text, spans, _template_controls(model, text, spans)):
        if isinstance(fragment, int):
            tokens.append(fragment)
        else:
            tokens.extend(model.tokenize(fragment, add_special=False, parse_special=False))
    return tokens


def message_spans(messages: Sequence[Message], render: Render, text: str) -> list[Span] | None:
    """Where the messages' text lies in `text` (their rendering), in order; None when unsure.

    A template may trim a message (many do); any other change, or a template whose output
    depends on what a message says, gives None.
    """
    nonce = secrets.token_hex(6)  # a message cannot spell the markers by accident or design
    marks = [f"\ue000{nonce}:{index}\ue001" for index in range(len(messages))]
    try:
        skeleton = render([Message(m.role, mark) for m, mark in zip(messages, marks, strict=True)])
    except ChatTemplateError:
        return None
    parts = re.split(f"\ue000{nonce}:(\\d+)\ue001", skeleton)
    spans: list[Span] = []
    position = 0
    for k in range(0, len(parts), 2):
        own = parts[k]  # the template's text up to the next message
        if not text.startswith(own, position):
            return None
        position += len(own)
        if k + 1 == len(parts):
            break
        content = messages[int(parts[k + 1])].content
        after = parts[k + 2]
        for candidate in dict.fromkeys((content, content.strip())):
            end = position + len(candidate)
            if text.startswith(candidate, position) and text.startswith(after, end):
                break
        else:
            return None
        spans.append((position, end))
        position = end
    return spans if position == len(text) else None


def _template_controls(model: NativeModel, text: str, spans: Sequence[Span]) -> dict[str, tuple[int, int]]:
    """The control tokens the template's own text holds: their text -> (id, attributes)."""
    known = model.cache.setdefault("template_controls", {})
    assert isinstance(known, dict)
    controls: dict[str, tuple[int, int]] = {}
    start = 0
    for span_start, span_end in [*spans, (len(text), len(text))]:
        own = text[start:span_start]
        start = span_end
        if not own:
            continue
        found = known.get(own)
        if found is None:
            found = []
            for token in model.tokenize(own, add_special=False, parse_special=True):
                attributes = model.token_attr(token)
                if attributes & _SPECIAL:
                    found.append((model.token_text(token), token, attributes))
            if len(known) < 256:  # a conversation's template pieces repeat turn after turn
                known[own] = found
        for piece, token, attributes in found:
            controls[piece] = (token, attributes)
    return controls


def _fragments(text: str, spans: Sequence[Span], controls: dict[str, tuple[int, int]]) -> list[str | int]:
    """`text` split at the control tokens outside the messages, as llama.cpp's partition splits it."""
    starts = [start for start, _ in spans]

    def in_a_message(begin: int, end: int) -> bool:
        index = bisect_right(starts, end - 1) - 1  # the last message starting before `end`
        return index >= 0 and spans[index][1] > begin

    fragments: list[Span | int] = [(0, len(text))]
    for piece in sorted(controls, key=len, reverse=True):
        token, attributes = controls[piece]
        split: list[Span | int] = []
        for fragment in fragments:
            if isinstance(fragment, int):
                split.append(fragment)
                continue
            start, end = fragment
            search = start
            while (found := text.find(piece, search, end)) >= 0:
                if in_a_message(found, found + len(piece)):
                    search = found + 1
                    continue
                left = found
                if attributes & _ATTR_LSTRIP:
                    while left > start and text[left - 1] in _C_SPACE:
                        left -= 1
                if left > start:
                    split.append((start, left))
                split.append(token)
                start = search = found + len(piece)
                if attributes & _ATTR_RSTRIP:
                    while start < end and text[start] in _C_SPACE:
                        start += 1
                    search = start
            if end > start:
                split.append((start, end))
        fragments = split
    return [text[f[0] : f[1]] if isinstance(f, tuple) else f for f in fragments]


def _refuse_control_text(model: NativeModel, messages: Sequence[Message]) -> None:
    for message in messages:
        for token in model.tokenize(message.content, add_special=False, parse_special=True):
            if model.token_attr(token) & _SPECIAL:
                raise ChatTemplateError(
                    f"a {message.role} message holds {model.token_text(token)!r}, the text of one of "
                    "the model's control tokens, and its chat template changes messages in a way that "
                    "keeps wai from sending that text as plain text",
                    hint="remove it from the message, or use another model",
                )

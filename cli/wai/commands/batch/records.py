"""The records of `wai batch` and the prompt each one makes.

A line that is a JSON object is a record; any other non-empty line is the record
`{"input": LINE}`. A TEMPLATE fills its `{field}` placeholders from the record (`{{` and `}}` are
braces); without one a record's `prompt` (or `messages`, or the plain line) is the prompt. A record
that cannot make a prompt is that record's failure, never the batch's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast, get_args

from wai.conversation import Message, Role

# A field's name is whatever a JSON key holds but braces, blanks, quotes, colons and commas (so that
# a JSON example in the prompt is not one): `{név}`, `{user-name}`, `{a.b}` are placeholders too,
# and one the record lacks is its error, never text sent to the model as it stands.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}\s\"':,]+)\}")
_ROLES = frozenset(get_args(Role))
# The input is decoded with surrogateescape: a byte that is not UTF-8 becomes one of these.
_UNDECODED = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class Record:
    """One record, by its place among the input's records (0-based, blank lines not counted)."""

    index: int
    fields: Mapping[str, Any]
    plain: bool  # a plain line, read as {"input": LINE}
    unreadable: str | None = None  # why the line makes no record (bytes that are not UTF-8)

    @property
    def id(self) -> object | None:
        return self.fields.get("id")


class RecordError(ValueError):
    """Why a record makes no prompt: told on its own output line."""


def read_records(lines: Iterable[str]) -> list[Record]:
    """The records of the input's lines, in order; blank lines are no record."""
    records: list[Record] = []
    for line in lines:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        bad = _UNDECODED.search(text)
        if bad is not None:
            # Sent with U+FFFD in place of its bytes, the prompt would not be what the file says.
            shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            why = (
                f"the line is not UTF-8 text (byte 0x{ord(bad.group()) - 0xDC00:02x} at character "
                f"{bad.start() + 1}): convert the input to UTF-8 (e.g. iconv -f latin1 -t utf-8)"
            )
            records.append(Record(len(records), {"input": shown}, plain=True, unreadable=why))
            continue
        fields: Any = None
        if text.lstrip().startswith("{"):
            try:
                fields = json.loads(text)
            except ValueError:
                fields = None
        if isinstance(fields, dict):
            records.append(Record(len(records), fields, plain=False))
        else:
            records.append(Record(len(records), {"input": text}, plain=True))
    return records


def fill(template: str, record: Record) -> str:
    """TEMPLATE with each `{field}` replaced by the record's field (text as it is, any other value
    as JSON); a field the record lacks is a RecordError."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)[0]  # `{{` or `}}`: one brace
        if name not in record.fields:
            have = ", ".join(sorted(record.fields)) or "none"
            nested = " (a field inside another is not reached: flatten it first, e.g. with jq)"
            raise RecordError(
                f"the record has no field {name!r} for the template's {{{name}}} (it has: {have})"
                + (nested if "." in name and name.split(".")[0] in record.fields else "")
            )
        found = record.fields[name]
        return found if isinstance(found, str) else json.dumps(found, ensure_ascii=False)

    return _PLACEHOLDER.sub(value, template)


def messages_of(record: Record, template: str | None, system: str | None) -> tuple[Message, ...]:
    """The conversation one record sends: the system prompt (-s) first unless the record's own
    messages bring one, and the record's prompt last."""
    if record.unreadable is not None:
        raise RecordError(record.unreadable)
    if template is not None:
        prompt = fill(template, record)
        if not prompt.strip():  # as `wai ask ""` refuses it: a request for nothing is still billed
            raise RecordError("the TEMPLATE filled from the record is an empty prompt")
        conversation: tuple[Message, ...] = (Message("user", prompt),)
    else:
        conversation = _own_prompt(record)
    if system and not any(message.role == "system" for message in conversation):
        conversation = (Message("system", system), *conversation)
    return conversation


def _own_prompt(record: Record) -> tuple[Message, ...]:
    fields = record.fields
    for name in ("prompt", "input"):
        if name in fields:
            text = fields[name]
            if not isinstance(text, str) or not text.strip():
                raise RecordError(f"the record's {name!r} is not a text with something in it")
            return (Message("user", text),)
    if "messages" in fields:
        return _messages(fields["messages"])
    have = ", ".join(sorted(fields)) or "none"
    raise RecordError(
        f"the record has no 'prompt', 'messages' or 'input' field (it has: {have}); "
        "give a TEMPLATE such as '{text}' to make its prompt"
    )


def _messages(value: object) -> tuple[Message, ...]:
    if not isinstance(value, list) or not value:
        raise RecordError("the record's 'messages' is not a list of messages")
    conversation: list[Message] = []
    for item in value:
        role = item.get("role") if isinstance(item, dict) else None
        content = item.get("content") if isinstance(item, dict) else None
        if role not in _ROLES or not isinstance(content, str):
            raise RecordError(
                "each of the record's 'messages' needs a 'role' (system, user or assistant) "
                "and a text 'content'"
            )
        conversation.append(Message(cast(Role, role), content))
    if conversation[-1].role != "user":
        raise RecordError("the record's 'messages' must end with the user's message")
    return tuple(conversation)

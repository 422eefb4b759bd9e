"""The transcript of one conversation, as `wai ask` and `wai chat` keep it.

A failure to write a transcript never fails a turn: the reply has already been shown, so the
user gets a warning and the conversation goes on. Reading one back (`-c`, `--cid`) is different:
the user asked for it, so a missing or unreadable conversation is an error.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, replace
from typing import Literal

from wai.conversation import Message
from wai.errors import UsageError, WaiError
from wai.notices import Notifier
from wai.sampling import Sampling
from wai.store.database import Store, StoredTurn, TurnData, db_path, new_conversation_id, write_refusal
from wai.terminal import stop_signals
from wai.turn_result import TurnResult, is_reply

Source = Literal["ask", "chat", "batch"]


@dataclass(frozen=True, slots=True)
class Continued:
    """A stored conversation brought back: what to resume it with."""

    id: str
    model: str
    system: str | None
    turns: tuple[StoredTurn, ...]

    def messages(self) -> tuple[Message, ...]:
        """The turns as user/assistant messages (no system message; the caller adds its own)."""
        return turns_as_messages(self.turns)


def answered(turn: TurnData) -> bool:
    """A stored turn counts as a reply by the rule of TurnResult.answered."""
    return is_reply(turn.reply, turn.finish_reason)


def turns_as_messages(turns: tuple[StoredTurn, ...] | list[StoredTurn]) -> tuple[Message, ...]:
    messages: list[Message] = []
    for turn in turns:
        if not answered(turn.data):
            continue
        messages.append(Message("user", turn.data.prompt))
        messages.append(Message("assistant", turn.data.reply))
    return tuple(messages)


class TranscriptLog:
    """Where the turns of the current conversation go.

    `record`: False for `--no-log`; continuing a stored conversation still works then, but
    nothing new is written. The conversation row is created with its first turn, so a session
    that never sends anything leaves nothing behind.
    """

    def __init__(self, notifier: Notifier, *, source: Source, record: bool = True) -> None:
        self.notifier = notifier
        self.source = source
        self.record = record
        self.conversation_id: str | None = None
        self._next_id: str | None = None  # the id the next new conversation gets (see affinity)
        # The last turn of the conversation as it stands (the next one follows it), None before one.
        self.head: int | None = None
        self._store: Store | None = None
        self._broken = False

    def _open(self, *, reading: bool = False) -> Store:
        """The store; `reading`: to read a conversation back, which a read-only file still allows."""
        if self._store is None:
            self._store = (
                Store.for_reading(db_path(), self.notifier.warn) if reading else Store.open_default()
            )
        elif self._store.read_only and not reading:
            raise write_refusal(self._store.path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def start_conversation(self) -> None:
        """The next turn begins a new conversation."""
        self.conversation_id = None
        self._next_id = None
        self.head = None

    def fork(self) -> None:
        """The next turn begins a new conversation that follows this one's last turn (/fork): the
        turns so far stay where they are, and the new conversation links to them."""
        self.conversation_id = None
        self._next_id = None

    def _last_exchange(self, store: Store) -> list[StoredTurn]:
        """The turns from the last one back to the last reply, newest first: the exchange /undo
        takes out, with the failed turns after it (never sent again, but logged)."""
        chain: list[StoredTurn] = []
        head = self.head
        while head is not None:
            turn = store.turn(head)
            if turn is None:
                break
            chain.append(turn)
            if answered(turn.data):
                break
            head = store.parent_of(turn)
        return chain

    def undo(self) -> None:
        """Take the last exchange out of the conversation (/undo); it stays in the transcript."""
        if not self.record or self.head is None:
            return
        try:
            store = self._open()
            chain = self._last_exchange(store)
            for turn in self._own(chain):
                store.set_superseded(turn.id, True)
            self.head = store.parent_of(chain[-1]) if chain else None
        except (WaiError, sqlite3.Error, OSError) as exc:
            self.notifier.warn(f"the transcript was not changed: {exc}")

    def alternatives(self) -> list[StoredTurn]:
        """The exchanges that stood where the last one stands (/retry, /edit), it among them."""
        if not self.record or self.head is None:
            return []
        store = self._open(reading=True)
        chain = self._last_exchange(store)
        return store.alternatives(chain[-1]) if chain else []

    def switch_to(self, turn_id: int) -> None:
        """Make an alternative of the last exchange the conversation's (/alt N)."""
        if self.head is None or turn_id == self.head:
            return
        store = self._open()
        chain = self._last_exchange(store)
        for turn in self._own(chain):
            store.set_superseded(turn.id, True)
        chosen = store.turn(turn_id)
        if chosen is not None and chosen.conversation_id == self.conversation_id:
            store.set_superseded(turn_id, False)
        self.head = turn_id

    def _own(self, turns: list[StoredTurn]) -> list[StoredTurn]:
        """Those of `turns` this conversation wrote. A fork begins with the turns of the one it came
        from: taking one out of the fork (/undo, /alt) moves where the fork goes on from, and
        leaves the other conversation as it was."""
        return [turn for turn in turns if turn.conversation_id == self.conversation_id]

    def affinity(self) -> str:
        """The conversation's prompt-caching key: the same for each of its turns, in this process
        and in a later one that continues it (-c, --cid), different for another conversation. A
        hash of its id (random, and the time it began), so nothing in it identifies the user."""
        if self.conversation_id is None and self._next_id is None:
            self._next_id = new_conversation_id()  # the id its first turn will be written under
        key = self.conversation_id or self._next_id
        assert key is not None
        return conversation_affinity(key)

    def continue_conversation(self, conversation_id: str | None) -> Continued:
        """Resume a stored conversation: the given id (or unique prefix), or the latest one."""
        store = self._open(reading=True)
        if conversation_id is None:
            found = store.latest_conversation_id()
            if found is None:
                raise UsageError("there is no conversation to continue yet", hint="start one without -c")
        else:
            found = store.resolve_conversation_id(conversation_id)
        summary = store.conversation(found)
        turns = tuple(store.active_path(found))
        self.conversation_id = found
        self.head = turns[-1].id if turns else None
        return Continued(id=found, model=summary.model, system=summary.system, turns=turns)

    def record_turn(
        self,
        prompt: str,
        result: TurnResult,
        *,
        system: str | None,
        sampling: Sampling,
        replaces: int | None = None,
    ) -> int | None:
        """Write a finished turn (complete, interrupted or failed); its id, or None if not written."""
        if not self.record:
            return None
        turn = turn_data(prompt, result, system=system, sampling=sampling)
        try:
            # A second Ctrl-C or a SIGTERM right after the first must not cost the turn itself.
            with stop_signals.deferred():
                store = self._open()
                # It follows the last turn, or, regenerating one, what that one followed.
                replaced = store.turn(replaces) if replaces is not None else None
                parent = store.parent_of(replaced) if replaced is not None else self.head
                turn = replace(turn, parent_id=parent or 0)
                if self.conversation_id is None:
                    self.conversation_id = self._next_id or new_conversation_id()
                    self._next_id = None
                stored = store.add_turn(self.conversation_id, turn, source=self.source, replaces=replaces)
                # A failed turn is on the path too (logged where it happened), though never resent.
                self.head = stored.id
        except (WaiError, sqlite3.Error, OSError) as exc:
            if not self._broken:  # once is enough; the conversation itself goes on
                self.notifier.warn(f"this turn was not saved to the transcript: {exc}")
            self._broken = True
            return None
        self._broken = False
        return stored.id


def conversation_affinity(conversation_id: str) -> str:
    return hashlib.sha256(f"wai conversation {conversation_id}".encode()).hexdigest()[:32]


def turn_data(prompt: str, result: TurnResult, *, system: str | None, sampling: Sampling) -> TurnData:
    info = result.info
    timings = result.timings
    cost = result.cost
    return TurnData(
        prompt=prompt,
        reply=result.text,
        model=info.model,
        backend=info.backend,
        system=system,
        precision=info.precision,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        usage_exact=result.usage_exact,
        prompt_exact=result.prompt_exact,
        max_tokens=info.max_tokens,
        sampling=sampling.given(),
        first_token_s=timings.first_token,
        total_s=timings.total,
        load_s=timings.load,
        finish_reason=result.finish_reason,
        interrupted=result.interrupted,
        error=result.error_text,
        reasoning=result.reasoning,
        cached_tokens=result.cached_tokens,
        cost_usd=None if cost is None else cost.usd,
        neurons=cost.neurons if cost is not None and info.bills_neurons else None,
    )

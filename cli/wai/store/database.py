"""SQLite transcripts: every turn of `wai ask` and `wai chat`, kept at $WAI_HOME/logs.db.

Durability: the database runs in WAL mode with synchronous=FULL, and a turn is written in one
transaction when it ends. A crash, `kill -9` or power loss during a reply therefore loses at most
that reply (it was never written), a commit that returned is on disk, and SQLite's journal keeps
the file consistent whatever happens mid-write. A full disk fails the one commit (SQLITE_FULL),
which is rolled back; earlier turns are untouched. FULL costs one fsync per turn, which a
conversation never notices.

The schema's version lives in `PRAGMA user_version`; `_MIGRATIONS[n]` moves version n to n+1,
each in its own transaction, so an old file is brought forward the first time a newer wai opens it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from wai.errors import ConfigError, UsageError

DB_NAME = "logs.db"
_SQLITE_INTEGER_MAX = 2**63 - 1
BUSY_TIMEOUT_MS = 5000

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1
    (
        """
        CREATE TABLE conversations (
            id         TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            model      TEXT NOT NULL,
            system     TEXT,
            source     TEXT NOT NULL
        )
        """,
        """
        CREATE TABLE turns (
            id                INTEGER PRIMARY KEY,
            conversation_id   TEXT NOT NULL REFERENCES conversations(id),
            created_at        TEXT NOT NULL,
            prompt            TEXT NOT NULL,
            reply             TEXT NOT NULL,
            system            TEXT,
            model             TEXT NOT NULL,
            backend           TEXT NOT NULL,
            precision         TEXT,
            prompt_tokens     INTEGER,
            completion_tokens INTEGER,
            usage_exact       INTEGER NOT NULL,
            max_tokens        INTEGER,
            sampling          TEXT NOT NULL,
            first_token_s     REAL,
            total_s           REAL,
            load_s            REAL,
            finish_reason     TEXT,
            interrupted       INTEGER NOT NULL,
            error             TEXT,
            superseded        INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX turns_by_conversation ON turns(conversation_id, id)",
    ),
    # 1 -> 2: a reasoning model's thinking, kept apart from its reply ('' for every older turn)
    ("ALTER TABLE turns ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''",),
    # 2 -> 3: the prompt's count exact or not, apart from the reply's (`usage_exact`); NULL for
    # every older turn, whose `usage_exact` said it of both figures at once and still does
    ("ALTER TABLE turns ADD COLUMN prompt_exact INTEGER",),
    # 3 -> 4: what a turn cost. cached_tokens: the part of prompt_tokens the server had cached;
    # cost_usd by the catalog's price then; neurons where the backend bills in them (Workers AI).
    # NULL for every older turn, and for a turn of a model without a price.
    (
        "ALTER TABLE turns ADD COLUMN cached_tokens INTEGER",
        "ALTER TABLE turns ADD COLUMN cost_usd REAL",
        "ALTER TABLE turns ADD COLUMN neurons REAL",
        "CREATE INDEX turns_by_time ON turns(created_at)",
    ),
    # 4 -> 5: branches. parent_id: the turn this one follows (0: none, the first of its line; a
    # turn of another conversation for the first turn of a /fork); NULL for every older turn,
    # which follows the turn before it that nothing superseded, as it always did.
    ("ALTER TABLE turns ADD COLUMN parent_id INTEGER",),
)
SCHEMA_VERSION = len(_MIGRATIONS)
# What a turn written before a column existed reads as, where the file cannot be migrated.
_COLUMN_DEFAULTS = {
    "reasoning": "''",
    "prompt_exact": "NULL",
    "cached_tokens": "NULL",
    "cost_usd": "NULL",
    "neurons": "NULL",
    "parent_id": "NULL",
}


def db_path() -> Path:
    from wai.settings import wai_home

    return wai_home() / DB_NAME


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_conversation_id() -> str:
    """A ULID in lower case: 48 bits of milliseconds then 80 random bits, so ids sort by time."""
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass(frozen=True, slots=True)
class TurnData:
    """One finished turn, as the caller knows it; the store adds ids and times."""

    prompt: str
    reply: str
    model: str
    backend: str
    system: str | None = None
    precision: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_exact: bool = True  # the reply's count (a turn before prompt_exact: both counts)
    max_tokens: int | None = None
    sampling: dict[str, float | int] = field(default_factory=dict)
    first_token_s: float | None = None
    total_s: float | None = None
    load_s: float | None = None
    finish_reason: str | None = None
    interrupted: bool = False
    error: str | None = None
    reasoning: str = ""  # the thinking, when the model sent any
    # The prompt's count exact or not; None for a turn logged before wai kept it apart.
    prompt_exact: bool | None = None
    cached_tokens: int | None = None  # of prompt_tokens, those the server had cached
    cost_usd: float | None = None  # by the catalog's price; None: no price was known
    neurons: float | None = None  # the same in Workers AI's neurons, where the backend bills them
    parent_id: int | None = None  # the turn it follows (0: none); None: logged before branches were kept

    @property
    def prompt_counted_exactly(self) -> bool:
        return self.usage_exact if self.prompt_exact is None else self.prompt_exact


@dataclass(frozen=True, slots=True)
class StoredTurn:
    id: int
    conversation_id: str
    created_at: str
    data: TurnData
    superseded: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "conversation_id": self.conversation_id,
            "created_at": self.created_at,
            **asdict(self.data),
            "superseded": self.superseded,
        }


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    id: str
    created_at: str
    updated_at: str
    model: str
    system: str | None
    source: str
    turns: int
    first_prompt: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class CannotWrite(ConfigError):
    """The transcript database is there but cannot be written: a read-only file, folder or mount."""


class Store:
    """The transcript database. One connection; every write is one short transaction.

    `read_only`: open it for reading alone, writing nothing (not even the -wal and -shm files
    beside it when they cannot be made), for `wai logs` where the file or its folder is read-only.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        try:
            if read_only:
                self._db = _connect_read_only(path)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                create_private(path)
                # SQLite would open a file it cannot write read-only without a word, and fail
                # only at the first turn; access(2) tells a read-only mount apart, for root too.
                if not os.access(path, os.W_OK):
                    raise write_refusal(path)
                # isolation_level=None: transactions are begun and ended here, explicitly.
                self._db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        except (OSError, sqlite3.Error) as exc:
            if not read_only and _is_write_refusal(exc):
                raise write_refusal(path) from None
            raise ConfigError(f"{path}: cannot open the transcript database ({exc})") from None
        self._db.row_factory = sqlite3.Row  # columns by name: a new column shifts no index
        try:
            if read_only:
                self._check_version()
            else:
                self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                # Before anything is set: even switching to WAL rewrites a file's header, and a
                # newer wai's file is refused untouched.
                self._refuse_newer()
                self._configure()
                self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if not read_only and _is_write_refusal(exc):
                raise write_refusal(path) from None
            raise ConfigError(
                f"{path}: not a usable transcript database ({exc})",
                hint="move it aside; wai starts a new one",
            ) from None
        except BaseException:  # a newer wai's file, say: refused, and the connection not left open
            self._db.close()
            raise

    @classmethod
    def open_default(cls) -> Store:
        return cls(db_path())

    @classmethod
    def for_reading(cls, path: Path, warn: Callable[[str], None]) -> Store:
        """Open `path` to read it: as usual where it can be written, else read-only, saying why."""
        _refuse_a_folder(path)  # one line that says what is wrong, not a warning then an error
        try:
            return cls(path)
        except CannotWrite as refused:
            warn(f"{refused.message}; reading it without writing")
            return cls(path, read_only=True)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _configure(self) -> None:
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self) -> None:
        """Read-only, an older file cannot be brought forward, but it is read as it is (a column it
        lacks reads as its default); a newer one is not understood."""
        version = self.schema_version()
        if version < 1 or version > SCHEMA_VERSION:
            newer = version > SCHEMA_VERSION
            raise ConfigError(
                f"{self.path} was written by {'a newer' if newer else 'an older'} wai (schema {version}; "
                f"this one knows {SCHEMA_VERSION}) and cannot be changed here",
                hint="upgrade wai" if newer else "make it writable once so wai can update it",
            )

    def _refuse_newer(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path} was written by a newer wai (schema {version}; this one knows {SCHEMA_VERSION})",
                hint="upgrade wai",
            )

    def _migrate(self) -> None:
        self._refuse_newer()  # again, in WAL: another wai may have brought it forward meanwhile
        version = self.schema_version()
        if 0 < version < SCHEMA_VERSION:
            self._back_up(version)
        while version < SCHEMA_VERSION:
            with self._transaction():
                # Re-read under the write lock: another wai may have migrated meanwhile.
                version = self.schema_version()
                if version >= SCHEMA_VERSION:
                    break
                for statement in _MIGRATIONS[version]:
                    self._db.execute(statement)
                version += 1
                self._db.execute(f"PRAGMA user_version = {version}")

    def backup_path(self, version: int) -> Path:
        return self.path.with_name(f"{self.path.name}.schema-{version}.bak")

    def _back_up(self, version: int) -> None:
        """A copy of the file as the older wai left it, before it is brought forward: whole and
        consistent (SQLite's online backup, the WAL included), made once per schema."""
        target = self.backup_path(version)
        if target.exists():
            return
        create_private(target)
        copy = sqlite3.connect(target)
        try:
            self._db.backup(copy)
        finally:
            copy.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    # writing

    def add_turn(
        self,
        conversation_id: str,
        turn: TurnData,
        *,
        source: str,
        replaces: int | None = None,
    ) -> StoredTurn:
        """Write one turn (creating its conversation on its first turn) in one transaction.

        `replaces`: the id of a turn this one regenerates (`/retry`); it is kept but marked
        superseded, so continuing the conversation no longer sees it.
        """
        now = _now()
        with self._transaction():
            self._db.execute(
                "INSERT INTO conversations (id, created_at, updated_at, model, system, source) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at, "
                "model = excluded.model, system = excluded.system",
                (conversation_id, now, now, turn.model, turn.system, source),
            )
            cursor = self._db.execute(
                "INSERT INTO turns (conversation_id, created_at, prompt, reply, system, model, backend, "
                "precision, prompt_tokens, completion_tokens, usage_exact, max_tokens, sampling, "
                "first_token_s, total_s, load_s, finish_reason, interrupted, error, reasoning, "
                "prompt_exact, cached_tokens, cost_usd, neurons, parent_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    now,
                    turn.prompt,
                    turn.reply,
                    turn.system,
                    turn.model,
                    turn.backend,
                    turn.precision,
                    turn.prompt_tokens,
                    turn.completion_tokens,
                    int(turn.usage_exact),
                    turn.max_tokens,
                    json.dumps(turn.sampling, sort_keys=True),
                    turn.first_token_s,
                    turn.total_s,
                    turn.load_s,
                    turn.finish_reason,
                    int(turn.interrupted),
                    turn.error,
                    turn.reasoning,
                    None if turn.prompt_exact is None else int(turn.prompt_exact),
                    turn.cached_tokens,
                    turn.cost_usd,
                    turn.neurons,
                    turn.parent_id,
                ),
            )
            if replaces is not None:
                # A turn logged before branches were kept gets the parent link it stood on (the
                # new turn's), so it is found among the new one's alternatives (/alt).
                self._db.execute(
                    "UPDATE turns SET superseded = 1, parent_id = coalesce(parent_id, ?) "
                    "WHERE id = ? AND conversation_id = ?",
                    (turn.parent_id, replaces, conversation_id),
                )
        turn_id = cursor.lastrowid
        assert turn_id is not None
        return StoredTurn(id=turn_id, conversation_id=conversation_id, created_at=now, data=turn)

    # reading

    def latest_conversation_id(self) -> str | None:
        # Turn ids only grow, so the newest turn names the latest conversation, whatever the clock did.
        row = self._db.execute("SELECT conversation_id FROM turns ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else str(row["conversation_id"])

    def resolve_conversation_id(self, given: str) -> str:
        """A full id or a unique prefix of one."""
        given = given.strip().lower()
        if not given:
            raise UsageError("the conversation id is empty", hint="`wai logs` lists them")
        rows = self._db.execute(
            "SELECT id FROM conversations WHERE id = ? OR substr(id, 1, ?) = ? ORDER BY id LIMIT 3",
            (given, len(given), given),
        ).fetchall()
        ids = [str(row["id"]) for row in rows]
        if given in ids:
            return given
        if not ids:
            raise UsageError(f"no conversation with id '{given}'", hint="`wai logs` lists them")
        if len(ids) > 1:
            raise UsageError(f"'{given}' matches several conversations", hint="give more of the id")
        return ids[0]

    def conversation(self, conversation_id: str) -> ConversationSummary:
        rows = self._summaries("WHERE c.id = ?", (conversation_id,), limit=1)
        if not rows:
            raise UsageError(f"no conversation with id '{conversation_id}'", hint="`wai logs` lists them")
        return rows[0]

    def recent(self, limit: int) -> list[ConversationSummary]:
        """The `limit` latest conversations; all of them for a negative limit, or one more than
        SQLite's integers hold (`wai logs -n 99999999999999999999`)."""
        return self._summaries("", (), limit=limit if limit <= _SQLITE_INTEGER_MAX else -1)

    def _summaries(self, where: str, params: Sequence[object], *, limit: int) -> list[ConversationSummary]:
        rows = self._db.execute(
            "SELECT c.id, c.created_at, c.updated_at, c.model, c.system, c.source, "
            "(SELECT count(*) FROM turns t WHERE t.conversation_id = c.id AND t.superseded = 0) AS turns, "
            "(SELECT t.prompt FROM turns t WHERE t.conversation_id = c.id ORDER BY t.id LIMIT 1) "
            "AS first_prompt "
            f"FROM conversations c {where} "
            "ORDER BY (SELECT max(t.id) FROM turns t WHERE t.conversation_id = c.id) DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [
            ConversationSummary(
                id=_text(row["id"]),
                created_at=_text(row["created_at"]),
                updated_at=_text(row["updated_at"]),
                model=_text(row["model"]),
                system=_opt_text(row["system"]),
                source=_text(row["source"]),
                turns=int(row["turns"]),
                first_prompt=_opt_text(row["first_prompt"]) or "",
            )
            for row in rows
        ]

    def turns(self, conversation_id: str, *, include_superseded: bool = False) -> list[StoredTurn]:
        extra = "" if include_superseded else " AND superseded = 0"
        return self._select_turns(f"conversation_id = ?{extra}", (conversation_id,))

    def turns_since(self, since: str) -> list[StoredTurn]:
        """Every turn written at or after `since` (an ISO time in UTC), of every conversation, those
        a /retry superseded included: each was sent, and paid for."""
        return self._select_turns("created_at >= ?", (since,))

    def turn(self, turn_id: int) -> StoredTurn | None:
        found = self._select_turns("id = ?", (turn_id,))
        return found[0] if found else None

    def parent_of(self, turn: StoredTurn) -> int | None:
        """The id of the turn `turn` follows, None when it is the first of its line. A turn logged
        before branches were kept follows the last turn before it that nothing superseded."""
        parent = turn.data.parent_id
        if parent is not None:
            return parent or None
        row = self._db.execute(
            "SELECT max(id) FROM turns WHERE conversation_id = ? AND id < ? AND superseded = 0",
            (turn.conversation_id, turn.id),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def active_path(self, conversation_id: str) -> list[StoredTurn]:
        """The conversation as it now stands: from its latest turn that nothing superseded back
        along the parent links (into the conversation it was forked from, if any), oldest first."""
        row = self._db.execute(
            "SELECT max(id) FROM turns WHERE conversation_id = ? AND superseded = 0", (conversation_id,)
        ).fetchone()
        head = None if row is None or row[0] is None else int(row[0])
        path: list[StoredTurn] = []
        seen: set[int] = set()
        while head is not None and head not in seen:  # a loop is a damaged file: stop, never hang
            seen.add(head)
            turn = self.turn(head)
            if turn is None:
                break
            path.append(turn)
            head = self.parent_of(turn)
        return path[::-1]

    def alternatives(self, turn: StoredTurn) -> list[StoredTurn]:
        """The turns that answer at the same place as `turn` (itself included): the replies /retry
        replaced and the messages /edit replaced, oldest first. Only turns with a parent link have
        any: an older turn's place cannot be told."""
        if turn.data.parent_id is None:
            return [turn]
        return self._select_turns(
            "conversation_id = ? AND parent_id = ?", (turn.conversation_id, turn.data.parent_id)
        )

    def set_superseded(self, turn_id: int, superseded: bool) -> None:
        """Take a turn out of its conversation's active path (/undo, /alt), or put it back (/alt)."""
        with self._transaction():
            self._db.execute("UPDATE turns SET superseded = ? WHERE id = ?", (int(superseded), turn_id))

    def _select_turns(self, where: str, params: Sequence[object]) -> list[StoredTurn]:
        present = {str(row["name"]) for row in self._db.execute("PRAGMA table_info(turns)")}
        later = ", ".join(
            name if name in present else f"{default} AS {name}" for name, default in _COLUMN_DEFAULTS.items()
        )
        rows = self._db.execute(
            "SELECT id, conversation_id, created_at, prompt, reply, system, model, backend, precision, "
            "prompt_tokens, completion_tokens, usage_exact, max_tokens, sampling, first_token_s, "
            f"total_s, load_s, finish_reason, interrupted, error, superseded, {later} "
            f"FROM turns WHERE {where} ORDER BY id",
            params,
        ).fetchall()
        return [_stored_turn(row) for row in rows]

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])


def _refuse_a_folder(path: Path) -> None:
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder, not a transcript database", hint="move it aside; wai starts a new one"
        )


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that writes nothing. SQLite reads a WAL database read-only only where its -shm
    file exists or can be made; in a read-only folder the file is opened as immutable instead."""
    from urllib.parse import quote

    _refuse_a_folder(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no transcript database there")
    uri = f"file:{quote(str(path.resolve()))}"
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("PRAGMA user_version").fetchone()
        return db
    except sqlite3.Error as exc:
        db.close()  # not a database, say: refused by the caller, and nothing left open
        if not isinstance(exc, sqlite3.OperationalError):
            raise
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)


def _is_write_refusal(exc: BaseException) -> bool:
    """The file system or its permissions refused a write (not a damaged or foreign file)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
    name = getattr(exc, "sqlite_errorname", "")
    return isinstance(name, str) and name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM"))


def write_refusal(path: Path) -> CannotWrite:
    """Why `path` cannot be written, in the file system's words: the file itself, or its folder."""
    from wai.settings import cannot_write, os_reason

    try:
        with path.open("r+b"):
            pass
    except FileNotFoundError:
        pass
    except OSError as exc:
        return CannotWrite(f"{path}: cannot write the transcript database ({os_reason(exc)})")
    folder_problem = cannot_write(path.parent)
    if folder_problem is not None:
        return CannotWrite(f"{path}: cannot write the transcript database (its folder: {folder_problem})")
    return CannotWrite(f"{path}: cannot write the transcript database (permission denied)")


def create_private(path: Path) -> None:
    """Transcripts are private: create the file (if new) readable by its owner only. SQLite gives
    a database's -wal and -shm files the same mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _text(value: object) -> str:
    """A text column as text, whatever SQLite kept in it (a blob is decoded, bad bytes replaced)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _opt_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _stored_turn(row: sqlite3.Row) -> StoredTurn:
    # SQLite keeps whatever a column was given, and a file may have been written or mended by
    # another program: a figure that is not one reads as unknown, so every turn can still be
    # shown and continued, its words untouched.
    def opt_int(value: object) -> int | None:
        number = opt_float(value)
        return int(number) if number is not None and number.is_integer() else None

    def opt_float(value: object) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None

    def opt_amount(value: object) -> float | None:
        """A cost in USD or neurons: none is negative, nor beyond what any turn could spend."""
        number = opt_float(value)
        return number if number is not None and 0 <= number < 1e12 else None

    try:
        sampling = json.loads(_text(row["sampling"]))
    except ValueError:
        sampling = {}
    if isinstance(sampling, dict):  # only the numbers a sampling option can be
        sampling = {
            key: value
            for key, value in sampling.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        }
    data = TurnData(
        prompt=_text(row["prompt"]),
        reply=_text(row["reply"]),
        system=_opt_text(row["system"]),
        model=_text(row["model"]),
        backend=_text(row["backend"]),
        precision=_opt_text(row["precision"]),
        prompt_tokens=opt_int(row["prompt_tokens"]),
        completion_tokens=opt_int(row["completion_tokens"]),
        usage_exact=bool(row["usage_exact"]),
        max_tokens=opt_int(row["max_tokens"]),
        sampling=sampling if isinstance(sampling, dict) else {},
        first_token_s=opt_float(row["first_token_s"]),
        total_s=opt_float(row["total_s"]),
        load_s=opt_float(row["load_s"]),
        finish_reason=_opt_text(row["finish_reason"]),
        interrupted=bool(row["interrupted"]),
        error=_opt_text(row["error"]),
        reasoning=_text(row["reasoning"]),
        prompt_exact=None if row["prompt_exact"] is None else bool(row["prompt_exact"]),
        cached_tokens=opt_int(row["cached_tokens"]),
        cost_usd=opt_amount(row["cost_usd"]),
        neurons=opt_amount(row["neurons"]),
        parent_id=opt_int(row["parent_id"]),
    )
    return StoredTurn(
        id=int(row["id"]),  # the INTEGER PRIMARY KEY: SQLite holds it to an integer
        conversation_id=_text(row["conversation_id"]),
        created_at=_text(row["created_at"]),
        data=data,
        superseded=bool(row["superseded"]),
    )


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (Ctrl-C included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            try:
                self._db.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self._db.in_transaction:
            # SQLite may have rolled back already (e.g. after SQLITE_FULL).
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

"""Where `wai batch` writes its lines, and what an earlier run's file says is done (`--resume`).

Each line goes out whole, in one write, and is flushed at once, and a stop signal waits until it
is out: a Ctrl-C never leaves half a line. A kill -9 can (in the middle of a write); `--resume`
reads such a file up to its last whole line and drops the rest before it appends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from wai.errors import OutputError, UsageError
from wai.terminal import stop_signals


class LineWriter:
    """Writes JSON objects one a line, each whole and flushed, to a binary stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.written = 0

    def write(self, line: Mapping[str, object]) -> None:
        data = json.dumps(line, ensure_ascii=False).encode("utf-8", errors="surrogatepass") + b"\n"
        with stop_signals.deferred():  # a Ctrl-C waits until the line is out
            try:
                self._stream.write(data)
                self._stream.flush()
            except OSError as error:
                raise OutputError(error.strerror or str(error)) from None
        self.written += 1


@dataclass(frozen=True, slots=True)
class Earlier:
    """What an earlier run's output file holds: the records answered without error, and how many
    of its lines are dropped (failed records, to be asked again, and a broken last line)."""

    done: frozenset[int]
    dropped: int
    broken_tail: bool


def read_earlier(path: Path) -> Earlier:
    """What `open_output(path, resume=True)` will find, without changing the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Earlier(frozenset(), 0, broken_tail=False)
    except OSError as error:
        raise UsageError(f"cannot read {path} to resume: {error.strerror or error}") from None
    return _answered(data)[1]


def open_output(path: Path, *, resume: bool) -> tuple[BinaryIO, Earlier]:
    """The file to write to: truncated, or with --resume kept with only its answered records' lines."""
    if not resume:
        try:
            return path.open("wb", buffering=0), Earlier(frozenset(), 0, broken_tail=False)
        except OSError as error:
            raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""  # nothing done yet: --resume of a run that never began starts it
    except OSError as error:
        raise UsageError(f"cannot read {path} to resume: {error.strerror or error}") from None
    kept, earlier = _answered(data)
    if earlier.dropped or earlier.broken_tail:
        # Rewritten beside and moved over it: a crash now leaves the old file or the new one.
        fresh = path.with_name(path.name + ".resume-tmp")
        try:
            fresh.write_bytes(b"".join(kept))
            os.replace(fresh, path)
        except OSError as error:
            raise OutputError(f"{path}: {error.strerror or error}") from None
    try:
        return path.open("ab", buffering=0), earlier
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None


def _answered(data: bytes) -> tuple[list[bytes], Earlier]:
    """The whole lines of records answered without error, and what else the file held."""
    broken_tail = bool(data) and not data.endswith(b"\n")
    if broken_tail:
        data = data[: data.rfind(b"\n") + 1]  # a line cut by a kill: never a record's answer
    kept: list[bytes] = []
    done: set[int] = set()
    dropped = 0
    for line in data.splitlines(keepends=True):
        index = _answered_index(line)
        if index is None or index in done:
            dropped += bool(line.strip())
            continue
        done.add(index)
        kept.append(line)
    return kept, Earlier(frozenset(done), dropped, broken_tail)


def _answered_index(line: bytes) -> int | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("error") is not None:
        return None
    index = value.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None

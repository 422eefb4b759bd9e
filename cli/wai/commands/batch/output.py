"""Where `wai batch` writes its lines, and what an earlier run's file says is done (`--resume`).

Each line goes out whole, in one write, and is flushed at once, and a stop signal waits until it
is out: a Ctrl-C never leaves half a line. A kill -9 can (in the middle of a write); `--resume`
reads such a file up to its last whole line and drops the rest before it appends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
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

    @property
    def to_terminal(self) -> bool:
        try:
            return os.isatty(self._stream.fileno())
        except (OSError, ValueError, AttributeError):  # a stream with no descriptor (tests)
            return False

    def write(self, line: Mapping[str, object]) -> None:
        data = json.dumps(line, ensure_ascii=False).encode("utf-8", errors="surrogatepass") + b"\n"
        with stop_signals.deferred():  # a Ctrl-C waits until the line is out
            try:
                self._stream.write(data)
                self._stream.flush()
            except BrokenPipeError:
                raise  # the reader went away (`| head`): a quiet stop, as for every command
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


def read_earlier(path: Path, ids: Sequence[object | None]) -> Earlier:
    """What `open_output(path, resume=True, ids=ids)` will find, without changing the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Earlier(frozenset(), 0, broken_tail=False)
    except OSError as error:
        raise UsageError(f"cannot read {path} to resume: {error.strerror or error}") from None
    return _answered(data, path, ids)[1]


def open_output(path: Path, *, resume: bool, ids: Sequence[object | None] = ()) -> tuple[BinaryIO, Earlier]:
    """The file to write to: truncated, or with --resume kept with only its answered records' lines.

    `ids`: the input's records' ids (None where a record has none), by index. With --resume, a
    file whose lines are not this input's answers (another file, another input's output) is
    refused untouched: dropping its lines as failures would lose what it held."""
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
    kept, earlier = _answered(data, path, ids)
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


def _answered(data: bytes, path: Path, ids: Sequence[object | None]) -> tuple[list[bytes], Earlier]:
    """The whole lines of records answered without error, and what else the file held."""
    broken_tail = bool(data) and not data.endswith(b"\n")
    if broken_tail:
        data = data[: data.rfind(b"\n") + 1]  # a line cut by a kill: never a record's answer
    kept: list[bytes] = []
    done: set[int] = set()
    dropped = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.strip():
            continue
        _check_belongs(line, number, path, ids)
        index = _answered_index(line)
        if index is None or index in done:
            dropped += bool(line.strip())
            continue
        done.add(index)
        kept.append(line)
    return kept, Earlier(frozenset(done), dropped, broken_tail)


def _check_belongs(line: bytes, number: int, path: Path, ids: Sequence[object | None]) -> None:
    """A UsageError unless the line is a batch line of a record of this input (its index within
    the input, and the record's own id)."""
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    fields: dict[str, object] = value if isinstance(value, dict) else {}
    index = fields.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        why = "is not a line of wai batch's output"
    elif index >= len(ids):
        why = f"answers record {index}, and the input has {len(ids)} records"
    elif fields.get("id") != ids[index]:
        why = f"answers record {index} with the id {fields.get('id')!r}, and the input's has {ids[index]!r}"
    else:
        return
    raise UsageError(
        f"cannot resume {path}: its line {number} {why}; --resume continues the output of the same "
        "input: give that input, or another -o FILE"
    )


def _answered_index(line: bytes) -> int | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("error") is not None:
        return None
    index = value.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None

"""Saved llama.cpp states of local conversations, so a conversation continued in a new process
(`wai ask -c`, `--cid`, `wai chat -c`) decodes only what is new instead of its whole history.

After a local turn, the state of the sequence (its tokens' keys and values) is saved with
llama.cpp's sequence-state file functions, under $WAI_HOME/states/: one folder per model file
and llama.cpp build (a hash of the file's path, size and modification time, and the build's
version), one file per conversation (its prompt-caching key). The file holds the exact tokens
whose states it keeps; a later prompt reuses them only as far as it begins with the same tokens,
and a file that will not load, or another model's or build's, is never used. The states together
are kept under a size bound, the oldest dropped first; `wai logs --prune-cache` drops them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from wai import settings
from wai.errors import ConfigError

# Most bytes all saved states may take together; the oldest go first past it.
DEFAULT_LIMIT = 1 << 30
LIMIT_ENV = "WAI_STATE_CACHE_BYTES"
SUFFIX = ".state"


def states_dir() -> Path:
    return settings.wai_home() / "states"


def limit() -> int:
    """The bound on the saved states' total size: WAI_STATE_CACHE_BYTES, else 1 GiB; a ConfigError
    for a value that is not a whole number of bytes (read as the default, "512M" would keep twice
    what its writer allowed)."""
    value = os.environ.get(LIMIT_ENV, "").strip()
    if not value:
        return DEFAULT_LIMIT
    if value.isascii() and value.isdigit():
        return int(value)
    raise ConfigError(
        f"{LIMIT_ENV} must be a whole number of bytes, got {value!r}",
        hint=f"e.g. {LIMIT_ENV}=536870912 for 512 MiB; unset, the bound is 1 GiB",
    )


@dataclass(frozen=True, slots=True)
class StateKey:
    """Where a conversation's state on one model file and build is kept: `NAME.SIZE-CRC.state`,
    the file's size and CRC-32 as it was written in its name, so a file cut short (a full disk, a
    crash) or changed since is known before llama.cpp reads it (a cut one made llama.cpp abort
    the process; a changed one loaded without a word)."""

    folder: Path
    name: str

    def saved(self) -> Path | None:
        """The conversation's state file, None when there is none."""
        found = sorted(self.folder.glob(f"{self.name}.*{SUFFIX}"), key=_mtime)
        return found[-1] if found else None

    def seal(self, written: Path) -> Path:
        """Where `written` (a state llama.cpp just wrote) goes: its name carries its size and CRC."""
        return self.folder / f"{self.name}.{_size(written)}-{_crc(written):08x}{SUFFIX}"

    def others(self, kept: Path) -> list[Path]:
        """The conversation's earlier states, which `kept` replaces."""
        return [path for path in self.folder.glob(f"{self.name}.*{SUFFIX}") if path != kept]


def as_written(path: Path) -> bool:
    """Whether a state file is byte for byte what was saved: the size and CRC its name carries."""
    seal = path.name.removesuffix(SUFFIX).rpartition(".")[2]
    size, _, crc = seal.partition("-")
    if not size.isdigit() or len(crc) != 8:
        return False
    try:
        return _size(path) == int(size) and f"{_crc(path):08x}" == crc
    except OSError:
        return False


def _crc(path: Path) -> int:
    crc = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def state_key(model_path: Path, stamp: tuple[int, int], build: str | None, conversation: str) -> StateKey:
    """The model file (resolved path, size, mtime) and llama.cpp build a state belongs to: a state
    made by another file or build is never found, so never trusted."""
    model = hashlib.sha256(f"{model_path.resolve()}\0{stamp[0]}\0{stamp[1]}\0{build}".encode()).hexdigest()
    safe = hashlib.sha256(conversation.encode()).hexdigest()[:32]
    return StateKey(states_dir() / model[:32], safe)


def bound(keep: Path | None = None) -> int:
    """Drop the oldest saved states until the rest fit the limit (`keep`, just written, last of
    all, and it too when it alone is over the limit: the bound holds); the bytes freed."""
    files = sorted(_all_states(), key=lambda path: (path == keep, _mtime(path)))
    total = sum(_size(path) for path in files)
    freed = 0
    cap = limit()
    for path in files:
        if total <= cap:
            break
        size = _size(path)
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size
            freed += size
    return freed


def prune_all() -> tuple[int, int]:
    """`wai logs --prune-cache`: every saved state dropped; (files, bytes) freed."""
    count = freed = 0
    for path in _all_states():
        size = _size(path)
        with contextlib.suppress(OSError):
            path.unlink()
            count += 1
            freed += size
    root = states_dir()
    if root.is_dir():
        for folder in root.iterdir():
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty
    return count, freed


def _all_states() -> list[Path]:
    root = states_dir()
    if not root.is_dir():
        return []
    return [path for path in root.glob(f"*/*{SUFFIX}") if path.is_file()]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0

"""What a GGUF file says about itself, read from its header without loading any weights.

A small pure-Python reader of the GGUF container (magic, version, metadata key/values, tensor
table): fast enough for `wai models`, and a guard that junk or truncated files never reach
llama.cpp. Large arrays (the vocabulary, merges) are skipped, only their length is kept.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from wai.errors import BackendError

GGUF_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32
# Arrays longer than this are skipped (only their length is kept): vocabularies and merges.
_SMALL_ARRAY = 64
# Sanity bounds: beyond these, the header is corrupt, not merely large.
_MAX_COUNT = 1 << 24
_MAX_DIMS = 8

# llama.cpp's `enum llama_ftype` (general.file_type), named as llama.cpp's quantize tool names them.
FILE_TYPE_NAMES: dict[int, str] = {
    0: "f32",
    1: "f16",
    2: "q4_0",
    3: "q4_1",
    7: "q8_0",
    8: "q5_0",
    9: "q5_1",
    10: "q2_k",
    11: "q3_k_s",
    12: "q3_k_m",
    13: "q3_k_l",
    14: "q4_k_s",
    15: "q4_k_m",
    16: "q5_k_s",
    17: "q5_k_m",
    18: "q6_k",
    19: "iq2_xxs",
    20: "iq2_xs",
    21: "q2_k_s",
    22: "iq3_xs",
    23: "iq3_xxs",
    24: "iq1_s",
    25: "iq4_nl",
    26: "iq3_s",
    27: "iq3_m",
    28: "iq2_s",
    29: "iq2_m",
    30: "iq4_xs",
    31: "iq1_m",
    32: "bf16",
    36: "tq1_0",
    37: "tq2_0",
    38: "mxfp4_moe",
}
_FTYPE_GUESSED = 1024

# ggml tensor types: (name, elements per block, bytes per block).
TENSOR_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("f32", 1, 4),
    1: ("f16", 1, 2),
    2: ("q4_0", 32, 18),
    3: ("q4_1", 32, 20),
    6: ("q5_0", 32, 22),
    7: ("q5_1", 32, 24),
    8: ("q8_0", 32, 34),
    9: ("q8_1", 32, 40),
    10: ("q2_k", 256, 84),
    11: ("q3_k", 256, 110),
    12: ("q4_k", 256, 144),
    13: ("q5_k", 256, 176),
    14: ("q6_k", 256, 210),
    15: ("q8_k", 256, 292),
    16: ("iq2_xxs", 256, 66),
    17: ("iq2_xs", 256, 74),
    18: ("iq3_xxs", 256, 98),
    19: ("iq1_s", 256, 50),
    20: ("iq4_nl", 32, 18),
    21: ("iq3_s", 256, 110),
    22: ("iq2_s", 256, 82),
    23: ("iq4_xs", 256, 136),
    24: ("i8", 1, 1),
    25: ("i16", 1, 2),
    26: ("i32", 1, 4),
    27: ("i64", 1, 8),
    28: ("f64", 1, 8),
    29: ("iq1_m", 256, 56),
    30: ("bf16", 1, 2),
    34: ("tq1_0", 256, 54),
    35: ("tq2_0", 256, 66),
    39: ("mxfp4", 32, 17),
}

# Metadata value types: struct codes of the fixed-size ones.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


class GGUFError(BackendError):
    """The file is not a usable GGUF: not one at all, truncated, or corrupt."""


@dataclass(frozen=True, slots=True)
class ArrayInfo:
    """A metadata array too long to keep: its element type and length."""

    item_type: int
    length: int


MetaValue = int | float | bool | str | list[object] | ArrayInfo


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int

    @property
    def type_name(self) -> str:
        known = TENSOR_TYPES.get(self.type_id)
        return known[0] if known else f"type{self.type_id}"

    def nbytes(self) -> int | None:
        known = TENSOR_TYPES.get(self.type_id)
        if known is None:
            return None
        _, block, size = known
        elements = 1
        for dim in self.shape:
            elements *= dim
        return elements // block * size


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """The header of one GGUF file."""

    path: Path
    version: int
    metadata: dict[str, MetaValue]
    tensors: tuple[TensorInfo, ...]
    file_size: int
    data_offset: int
    needed_size: int = field(default=0)

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def context_length(self) -> int | None:
        """The trained context (`<arch>.context_length`)."""
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    @property
    def block_count(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.block_count")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def file_type(self) -> str | None:
        """The weights' precision as llama.cpp names the file type: f16, q8_0, q4_1, ...

        From `general.file_type`; a file without it gets the type most of its tensors have,
        as llama.cpp itself guesses.
        """
        value = self.metadata.get("general.file_type")
        if isinstance(value, int) and not isinstance(value, bool):
            return FILE_TYPE_NAMES.get(value & ~_FTYPE_GUESSED, f"ftype{value & ~_FTYPE_GUESSED}")
        weights = Counter(t.type_name for t in self.tensors if len(t.shape) >= 2)
        if not weights:
            return None
        name = weights.most_common(1)[0][0]
        return "f32" if name == "f32" else name


_cache: dict[tuple[str, int, int], GGUFInfo] = {}


def read_gguf_info(path: Path) -> GGUFInfo:
    """`read_gguf`, remembered while the file is unchanged (same size and modification time)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    info = _cache.get(key)
    if info is None:
        info = _cache[key] = read_gguf(path)
    return info


def read_gguf(path: Path) -> GGUFInfo:
    """Read and check the header of `path`. Raises GGUFError (or OSError) when it is unusable."""
    with path.open("rb") as handle:
        size = _file_size(handle.fileno())
        if size < 24:
            head = handle.read(size)
            raise GGUFError(f"{path} is not a GGUF model file ({_what_is(head, size)})")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _Parser(path, data, size).parse()


def _file_size(fileno: int) -> int:
    return os.fstat(fileno).st_size


def _what_is(head: bytes, size: int) -> str:
    """A short guess at what a non-GGUF file is, for the error message."""
    if size == 0:
        return "it is empty"
    text = head[:64].lstrip().lower()
    if text.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the weights: fetch the real file with `git lfs pull`"
    if text.startswith((b"<!doctype", b"<html", b"<?xml")):
        return "it is a web page: the download probably failed"
    if text.startswith(b"{"):
        return "it is JSON text: the download probably failed"
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg", b"ggml", b"ggmf", b"ggjt"):
        return "it is in the old GGML format; convert it to GGUF with llama.cpp's tools"
    if head[:2] == b"PK":
        return "it is a zip archive"
    if size < 24:
        return f"it is only {size} bytes long"
    return f"it starts with {head[:4]!r}, not {GGUF_MAGIC!r}"


class _Parser:
    def __init__(self, path: Path, data: mmap.mmap, size: int) -> None:
        self.path = path
        self.data = data
        self.size = size
        self.pos = 0
        self.order = "<"

    def fail(self, why: str) -> GGUFError:
        return GGUFError(f"{self.path} is not a usable GGUF model file: {why}")

    def truncated(self) -> GGUFError:
        return GGUFError(
            f"{self.path} is truncated ({self.size} bytes): its header ends before it is complete",
            hint="download it again",
        )

    def take(self, fmt: str) -> tuple[object, ...]:
        width = struct.calcsize(self.order + fmt)
        if self.pos + width > self.size:
            raise self.truncated()
        values = struct.unpack_from(self.order + fmt, self.data, self.pos)
        self.pos += width
        return values

    def uint(self, fmt: str) -> int:
        value = self.take(fmt)[0]
        assert isinstance(value, int)
        return value

    def string(self) -> str:
        length = self.uint("Q")
        if self.pos + length > self.size:
            raise self.truncated()
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.uint("Q")
        self.pos += length
        if self.pos > self.size:
            raise self.truncated()

    def value(self, kind: int) -> MetaValue:
        if kind in _SCALARS:
            value = self.take(_SCALARS[kind])[0]
            assert isinstance(value, int | float | bool)
            return value
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_type = self.uint("I")
            length = self.uint("Q")
            if length > self.size:
                raise self.fail(f"an array claims {length} items")
            if length <= _SMALL_ARRAY:
                return [self.value(item_type) for _ in range(length)]
            self.skip_array(item_type, length)
            return ArrayInfo(item_type, length)
        raise self.fail(f"unknown metadata value type {kind} at byte {self.pos}")

    def skip_array(self, item_type: int, length: int) -> None:
        if item_type in _SCALARS:
            self.pos += struct.calcsize(self.order + _SCALARS[item_type]) * length
            if self.pos > self.size:
                raise self.truncated()
        elif item_type == _STRING:
            for _ in range(length):
                self.skip_string()
        else:
            for _ in range(length):
                self.value(item_type)

    def parse(self) -> GGUFInfo:
        magic = bytes(self.data[:4])
        if magic != GGUF_MAGIC:
            raise GGUFError(
                f"{self.path} is not a GGUF model file ({_what_is(bytes(self.data[:64]), self.size)})"
            )
        self.pos = 4
        version = self.uint("I")
        if version > 0xFFFF:  # a big-endian file reads as a huge little-endian number
            self.order = ">"
            self.pos = 4
            version = self.uint("I")
        if version < 2:
            raise self.fail(f"GGUF version {version} is too old for llama.cpp; convert it again")
        if version > 3:
            raise self.fail(f"GGUF version {version} is newer than this reader knows (3)")
        tensor_count = self.uint("Q")
        kv_count = self.uint("Q")
        if tensor_count > _MAX_COUNT or kv_count > _MAX_COUNT:
            raise self.fail(f"the header claims {tensor_count} tensors and {kv_count} metadata keys")
        metadata: dict[str, MetaValue] = {}
        for _ in range(kv_count):
            key = self.string()
            metadata[key] = self.value(self.uint("I"))
        tensors = tuple(self.tensor() for _ in range(tensor_count))
        alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0:
            alignment = _DEFAULT_ALIGNMENT
        data_offset = -(-self.pos // alignment) * alignment
        needed = data_offset
        for tensor in tensors:
            nbytes = tensor.nbytes()
            if nbytes is not None:
                needed = max(needed, data_offset + tensor.offset + nbytes)
        if needed > self.size:
            raise GGUFError(
                f"{self.path} is truncated: it is {self.size} bytes, its tensors need {needed}",
                hint="download it again",
            )
        return GGUFInfo(
            path=self.path,
            version=version,
            metadata=metadata,
            tensors=tensors,
            file_size=self.size,
            data_offset=data_offset,
            needed_size=needed,
        )

    def tensor(self) -> TensorInfo:
        name = self.string()
        n_dims = self.uint("I")
        if n_dims > _MAX_DIMS:
            raise self.fail(f"tensor '{name}' claims {n_dims} dimensions")
        shape = tuple(self.uint("Q") for _ in range(n_dims))
        type_id = self.uint("I")
        offset = self.uint("Q")
        return TensorInfo(name=name, shape=shape, type_id=type_id, offset=offset)

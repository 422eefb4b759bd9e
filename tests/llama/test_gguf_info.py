"""Reading what a GGUF file says about itself, without llama.cpp, checked against the gguf package."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.support.tiny_gguf import CHAT_TEMPLATE, build_tiny_llama
from wai.llama.gguf_info import ArrayInfo, GGUFError, read_gguf, read_gguf_info


def test_the_header_of_a_model(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "m.gguf", ftype="q8_0", script="Hi", context_length=1024)
    info = read_gguf(model.path)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.context_length == 1024
    assert info.block_count == 2
    assert info.chat_template == CHAT_TEMPLATE
    assert info.file_type == "q8_0"
    assert info.name == "tiny-llama"
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, ArrayInfo) and tokens.length > 256  # long arrays are skipped, counted
    assert info.needed_size == info.file_size


def test_tensors_match_the_gguf_package(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    model = build_tiny_llama(tmp_path / "m.gguf", ftype="f16", script="Hi")
    ours = {t.name: (t.shape, t.type_name) for t in read_gguf(model.path).tensors}
    reader = gguf.GGUFReader(str(model.path))
    theirs = {t.name: (tuple(int(d) for d in t.shape), t.tensor_type.name.lower()) for t in reader.tensors}
    assert ours == theirs


def test_a_file_without_a_file_type_is_named_by_its_tensors(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "m.gguf", ftype="q8_0", script="Hi")
    data = model.path.read_bytes()
    key = b"general.file_type"
    at = data.index(key)
    # Rename the key in place (same length): the reader no longer finds a file type.
    renamed = data[:at] + b"general.xxxx_type" + data[at + len(key) :]
    other = tmp_path / "renamed.gguf"
    other.write_bytes(renamed)
    assert "general.file_type" not in read_gguf(other).metadata
    assert read_gguf(other).file_type == "q8_0"


def test_old_ggml_files_are_told_apart(tmp_path: Path) -> None:
    old = tmp_path / "old.bin"
    old.write_bytes(b"tjgg" + b"\x00" * 100)
    with pytest.raises(GGUFError, match="old GGML format"):
        read_gguf(old)


def test_unsupported_versions_are_refused(tmp_path: Path) -> None:
    for version, why in ((1, "too old"), (9, "newer")):
        path = tmp_path / f"v{version}.gguf"
        path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 0, 0) + b"\x00" * 16)
        with pytest.raises(GGUFError, match=why):
            read_gguf(path)


def test_absurd_counts_are_corruption_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "huge.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1 << 40, 1 << 40) + b"\x00" * 16)
    with pytest.raises(GGUFError, match="claims"):
        read_gguf(path)


def test_the_cached_reader_notices_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    build_tiny_llama(path, ftype="f16", script="Hi")
    assert read_gguf_info(path).file_type == "f16"
    build_tiny_llama(path, ftype="q8_0", script="Hi there")
    assert read_gguf_info(path).file_type == "q8_0"

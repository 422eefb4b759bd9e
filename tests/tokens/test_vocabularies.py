"""Installing llama.cpp's vocabulary files from llama-cpp-python's source distribution."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tests.support.vocab_fixture import _local_sdist, vocab_cache
from wai.errors import BackendError, ConfigError
from wai.tokens.vocabularies import (
    FAMILY_VOCABULARIES,
    install_vocabularies,
    installed_version,
    vocabulary_for,
)

__all__ = ["vocab_cache"]


def fake_sdist(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_test_cache_holds_every_family_vocabulary_and_its_reference_tests(vocab_cache: Path) -> None:
    for name in FAMILY_VOCABULARIES.values():
        assert (vocab_cache / name).stat().st_size > 100_000
        assert (vocab_cache / (name + ".inp")).is_file()
        assert (vocab_cache / (name + ".out")).is_file()
    assert (vocab_cache / ".installed-from").read_text().strip() == f"llama-cpp-python=={installed_version()}"


def test_vocabulary_for_a_family(vocab_cache: Path) -> None:
    assert vocabulary_for("llama-2", vocab_cache) == vocab_cache / "ggml-vocab-llama-spm.gguf"
    assert vocabulary_for("llama-3", vocab_cache) == vocab_cache / "ggml-vocab-llama-bpe.gguf"
    assert vocabulary_for("qwen2", vocab_cache) == vocab_cache / "ggml-vocab-qwen2.gguf"
    assert vocabulary_for("gemma", vocab_cache) is None
    assert vocabulary_for(None, vocab_cache) is None
    assert vocabulary_for("llama-2", vocab_cache / "nowhere") is None


def test_install_takes_only_vocabulary_files_by_their_base_name(tmp_path: Path) -> None:
    archive = fake_sdist(
        tmp_path / "llama_cpp_python-9.9.9.tar.gz",
        {
            "llama_cpp_python-9.9.9/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf": b"GGUF spm",
            "llama_cpp_python-9.9.9/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf.inp": b"text",
            "llama_cpp_python-9.9.9/vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf.out": b" 1 2",
            "llama_cpp_python-9.9.9/vendor/llama.cpp/models/other.gguf": b"not a vocabulary",
            "llama_cpp_python-9.9.9/README.md": b"readme",
        },
    )
    dest = tmp_path / "vocab"
    said: list[str] = []
    installed = install_vocabularies(dest, said.append, sdist=archive)
    assert installed == [dest / "ggml-vocab-llama-spm.gguf"]
    assert sorted(p.name for p in dest.iterdir()) == [
        ".installed-from",
        "ggml-vocab-llama-spm.gguf",
        "ggml-vocab-llama-spm.gguf.inp",
        "ggml-vocab-llama-spm.gguf.out",
    ]
    assert (dest / ".installed-from").read_text().strip() == "llama-cpp-python==9.9.9"
    assert any("installed" in line for line in said)
    # Again: nothing to do, even without the archive at hand.
    archive.unlink()
    again: list[str] = []
    assert install_vocabularies(dest, again.append, version="9.9.9") == installed
    assert any("already installed" in line for line in again)


def test_a_broken_or_missing_archive_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "llama_cpp_python-1.0.0.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match="cannot read the source distribution"):
        install_vocabularies(tmp_path / "vocab", sdist=junk)
    empty = fake_sdist(tmp_path / "llama_cpp_python-1.0.1.tar.gz", {"x/README.md": b"hi"})
    with pytest.raises(ConfigError, match="no ggml-vocab"):
        install_vocabularies(tmp_path / "vocab", sdist=empty)
    with pytest.raises(ConfigError, match="no such source distribution"):
        install_vocabularies(tmp_path / "vocab", sdist=tmp_path / "nothing.tar.gz")


@pytest.mark.e2e
def test_a_version_pip_cannot_fetch_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"could not fetch llama-cpp-python 0\.0\.0\.dev999"):
        install_vocabularies(tmp_path / "vocab", version="0.0.0.dev999")
    assert not (tmp_path / "vocab").exists()


@pytest.mark.skipif(_local_sdist() is None, reason="no local copy of the source distribution")
def test_install_from_the_real_source_distribution(tmp_path: Path) -> None:
    sdist = _local_sdist()
    assert sdist is not None
    installed = install_vocabularies(tmp_path / "vocab", sdist=sdist)
    names = {p.name for p in installed}
    assert set(FAMILY_VOCABULARIES.values()) <= names
    assert all(p.read_bytes()[:4] == b"GGUF" for p in installed)


@pytest.mark.e2e
def test_install_fetches_the_installed_versions_source_distribution_with_pip(tmp_path: Path) -> None:
    """What `wai setup` does; pip's cache makes it cheap after the first time."""
    dest = tmp_path / "vocab"
    installed = install_vocabularies(dest)
    assert {p.name for p in installed} >= set(FAMILY_VOCABULARIES.values())
    assert (dest / ".installed-from").read_text().strip() == f"llama-cpp-python=={installed_version()}"

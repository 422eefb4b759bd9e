"""Vocabularies for counting: a GGUF file's tokenizer, loaded once per process.

A vocabulary is the same NativeModel the local backend loads, with `vocab_only`: no weights, so
it loads in milliseconds, and the counters tokenize through the very calls the backend makes.
A vocabulary that cannot be had (no llama-cpp-python, a file llama.cpp cannot read) is not an
error: the caller counts with the estimate instead, saying why.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from wai.errors import BackendError, ConfigError

if TYPE_CHECKING:
    from wai.llama.native import NativeModel


@functools.lru_cache(maxsize=8)
def load_vocab(path: Path) -> NativeModel:
    """The vocabulary of a GGUF file, loaded once per process.

    Raises ConfigError without llama-cpp-python, LoadError (a BackendError) for a file llama.cpp
    cannot read.
    """
    from wai.llama.native import NativeModel

    return NativeModel.load(path, gpu_layers=0, vocab_only=True)


def load_or_why(path: Path) -> tuple[NativeModel | None, str | None]:
    """The vocabulary at `path` and None, or None and why it cannot be had (for the estimate)."""
    try:
        return load_vocab(path.resolve()), None
    except ConfigError:
        # The remote-only install (`pip install .`) has no llama.cpp: a vocabulary left by an
        # earlier full install cannot be read, and the count is the estimate.
        return None, "llama-cpp-python not installed"
    except (BackendError, OSError):
        return None, f"llama.cpp cannot read {path}"

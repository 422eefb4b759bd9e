"""Vocabularies for counting: a GGUF file's tokenizer, loaded once per process.

A vocabulary that cannot be had (no llama-cpp-python, a file llama.cpp cannot read) is not an
error: the caller counts with the estimate instead, saying why.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
from pathlib import Path
from typing import Any

from wai.errors import ChatTemplateError, ConfigError


@functools.lru_cache(maxsize=8)
def load_vocab(path: Path) -> Any:
    """A vocabulary-only `llama_cpp.Llama` for a GGUF file, loaded once per process.

    Raises ConfigError without llama-cpp-python, ValueError for a file llama.cpp cannot read.
    """
    from wai.backends.llama_native import lib

    llama_cpp = lib()  # routes llama.cpp's log lines: never on the terminal unless --debug
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    if not _opened:
        atexit.register(_close_vocabularies)
    _opened.append(vocab)
    return vocab


_opened: list[Any] = []


def _close_vocabularies() -> None:
    # Freed while llama_cpp is still whole: `Llama.__del__` at interpreter teardown finds its
    # module half gone and prints an ignored exception on stderr.
    while _opened:
        with contextlib.suppress(Exception):
            _opened.pop().close()
    load_vocab.cache_clear()


def load_or_why(path: Path) -> tuple[Any, str | None]:
    """The vocabulary at `path` and None, or None and why it cannot be had (for the estimate)."""
    try:
        return load_vocab(path.resolve()), None
    except ConfigError:
        # The remote-only install (`pip install .`) has neither llama.cpp nor jinja2: a vocabulary
        # left by an earlier full install cannot be read, and the count is the estimate.
        return None, "llama-cpp-python not installed"
    except (ValueError, OSError, RuntimeError):
        return None, f"llama.cpp cannot read {path}"
    except Exception as exc:
        # llama-cpp-python compiles the file's chat template while loading its vocabulary, with
        # jinja2: its own dependency, so importable here, where llama.cpp has loaded.
        import jinja2

        if not isinstance(exc, jinja2.TemplateError):
            raise
        raise ChatTemplateError(f"the chat template of {path.name} is not valid Jinja: {exc}") from None

"""`wai setup`: install the built-in local model and the tokenizer vocabularies."""

from __future__ import annotations

from wai.errors import EXIT_OK
from wai.notices import Notifier
from wai.settings import models_dir, vocab_dir


def run_setup(notifier: Notifier) -> int:
    from wai.builtin import install_builtin
    from wai.vocab import install_vocabularies

    for path in install_builtin(models_dir(), progress=notifier.info):
        notifier.info(f"model ready: {path}")
    install_vocabularies(vocab_dir(), progress=notifier.info)  # it says what it installed
    return EXIT_OK

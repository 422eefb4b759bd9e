"""`wai setup`: install the built-in local model and the vocabularies, then check llama.cpp."""

from __future__ import annotations

from wai.errors import EXIT_OK, BackendError
from wai.notices import Notifier
from wai.settings import models_dir, vocab_dir, wai_home


def run_setup(notifier: Notifier) -> int:
    from wai.backends import llama_check
    from wai.builtin import install_builtin
    from wai.vocab import install_vocabularies

    paths = install_builtin(models_dir(), progress=notifier.info)
    for path in paths:
        notifier.info(f"model ready: {path}")
    install_vocabularies(vocab_dir(), progress=notifier.info)  # it says what it installed
    notifier.info("checking that llama.cpp runs on this CPU: decoding with each built-in file")
    verdict = llama_check.run_check(paths)
    if not llama_check.save(verdict, wai_home()):
        notifier.warn(f"could not store the check's verdict in {wai_home()}")
    if not verdict.ok:
        raise BackendError(llama_check.failure_line(verdict))
    notifier.info(f"llama.cpp runs on this CPU (the build uses {', '.join(verdict.features)})")
    return EXIT_OK

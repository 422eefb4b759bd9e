"""`wai setup`: install the built-in local model and the vocabularies, then check llama.cpp."""

from __future__ import annotations

from wai.errors import EXIT_OK, BackendError, ConfigError
from wai.notices import Notifier
from wai.settings import cannot_write, vocab_dir, wai_home


def run_setup(notifier: Notifier) -> int:
    from wai.catalog.builtin import builtin_dir, install_builtin
    from wai.llama import check
    from wai.tokens.vocabularies import install_vocabularies

    models = builtin_dir()
    vocab = vocab_dir()
    # Checked before anything is downloaded; what can be installed still is.
    refused = {folder: why for folder in (models, vocab) if (why := cannot_write(folder)) is not None}
    paths = [] if models in refused else install_builtin(models, progress=notifier.info)
    for path in paths:
        notifier.info(f"model ready: {path}")
    if vocab not in refused:
        install_vocabularies(vocab, progress=notifier.info)  # it says what it installed
    if paths:
        notifier.info("checking that llama.cpp runs on this CPU: decoding with each built-in file")
        verdict = check.run_check(paths)
        if not check.save(verdict, wai_home()):
            notifier.warn(f"could not store the check's verdict in {wai_home()}")
        if not verdict.ok:
            raise BackendError(check.failure_line(verdict))
        notifier.info(f"llama.cpp runs on this CPU (the build uses {', '.join(verdict.features)})")
    if refused:
        what = "; ".join(f"{folder} ({why})" for folder, why in refused.items())
        skipped = "nothing was installed" if len(refused) == 2 else "the rest was installed"
        raise ConfigError(f"cannot write {what}: {skipped}", hint="WAI_HOME and WAI_MODELS_DIR choose others")
    return EXIT_OK

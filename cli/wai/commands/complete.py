"""Shell completion of `-m`: what a user may name there, read from the catalog, the providers' stored
lists and the file system. Completion runs inside the user's shell: it never fails, and reads no
network."""

from __future__ import annotations

from pathlib import Path

_PATH_STARTS = ("/", ".", "~")


def complete_model(incomplete: str) -> list[str]:
    """Catalog ids and aliases, providers' NAME:MODEL, or (for a path) folders and .gguf files."""
    try:
        if incomplete.startswith(_PATH_STARTS):
            return _gguf_paths(incomplete)
        return [name for name in _model_names() if name.startswith(incomplete)]
    except Exception:  # a broken catalog or config is for the command to report, not the shell
        return []


def _model_names() -> list[str]:
    from wai.catalog.entries import load_catalog
    from wai.settings import load_user_config

    catalog = load_catalog()
    names = [name for spec in catalog for name in (spec.id, *spec.aliases)]
    providers = load_user_config().providers()
    if providers:
        from wai.backends.openai.models import provider_completions

        names += [name for name, _meta in provider_completions(providers, set(catalog.models))]
    return sorted(set(names))


def _gguf_paths(incomplete: str) -> list[str]:
    typed = Path(incomplete).expanduser()
    folder, stem = (typed, "") if incomplete.endswith("/") else (typed.parent, typed.name)
    shown = incomplete[: len(incomplete) - len(stem)]  # the folder as the user wrote it
    found = []
    for entry in sorted(folder.iterdir()):
        if not entry.name.startswith(stem) or (entry.name.startswith(".") and not stem.startswith(".")):
            continue
        if entry.is_dir():
            found.append(f"{shown}{entry.name}/")
        elif entry.suffix.lower() == ".gguf":
            found.append(f"{shown}{entry.name}")
    return found

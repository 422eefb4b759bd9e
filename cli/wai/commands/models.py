"""`wai models`: the catalog as a table or JSON, with what can serve each model right now.

`--refresh` first reads the account's current models from Workers AI (catalog_store keeps them);
a refresh that fails says why and the catalog shown is the one that was there before.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from datetime import UTC, datetime

from wai.backends.registry import availability
from wai.catalog.entries import Catalog, ModelSpec, load_catalog
from wai.errors import EXIT_OK, ConfigError, WaiError
from wai.notices import Notifier
from wai.settings import (
    MISSING_CREDENTIALS,
    Credentials,
    UserConfig,
    load_credentials,
    load_user_config,
    models_dir,
    wai_home,
)
from wai.wording import counted


def _file_precision(spec: ModelSpec) -> str | None:
    path = spec.gguf_path()
    if path is None or not path.is_file():
        return None
    from wai.errors import WaiError
    from wai.llama.gguf_info import read_gguf_info

    try:
        return read_gguf_info(path).file_type
    except WaiError:
        return "unreadable"


def _gpu_offload() -> str:
    from wai.backends.registry import backend_named
    from wai.errors import WaiError

    try:
        facts = backend_named("local").describe()
    except WaiError as error:
        return f"local backend unavailable: {error}"
    if facts.get("error"):  # llama-cpp-python missing or unloadable
        return f"local backend unavailable: {facts['error']}"
    state = (
        "GPU offload available"
        if facts.get("gpu_offload_supported")
        else "CPU only (no GPU offload in this build)"
    )
    return f"llama-cpp-python {facts.get('llama_cpp_python')}: {state}; {_check_state()}"


def _check_state() -> str:
    """The last verdict of `wai setup`'s check, when it is about the build installed now."""
    from datetime import datetime

    from wai.llama import check
    from wai.settings import wai_home

    verdict = check.current_verdict(wai_home())
    if verdict is None:
        return "not checked on this CPU yet (`wai setup` checks it)"
    if not verdict.ok:
        return "FAILED its check: " + check.failure_line(verdict).split(": ", 1)[1]
    when = datetime.fromtimestamp(verdict.checked_at).strftime("%Y-%m-%d %H:%M")
    return f"checked on this CPU {when} ({' '.join(verdict.features)})"


def default_model_line(config: UserConfig, credentials: Credentials | None) -> str:
    """Which model `wai ask` uses without -m, and why."""
    from wai.catalog.resolve import BUILTIN_MODEL, DEFAULT_REMOTE_MODEL, default_model_name, served_default

    name = default_model_name(config, credentials)
    served = served_default(credentials) if credentials is not None else None
    if os.environ.get("WAI_MODEL"):
        why = "set by WAI_MODEL"
    elif config.text("default_model"):
        why = f"set by default_model in {config.path}"
    elif served is not None:
        why = f"{served[1]} serves it, by the last `wai models --refresh`; default_model sets another"
    elif credentials is not None:
        why = f"Workers AI credentials are set; without them {BUILTIN_MODEL}"
    else:
        why = f"no Workers AI credentials; with them {DEFAULT_REMOTE_MODEL}"
    return f"default model: {name} ({why})"


def aliases_line(rows: list[dict[str, object]]) -> str:
    """Every alias `-m` takes, and the model each names."""
    pairs: list[str] = []
    for row in rows:
        aliases = row["aliases"]
        assert isinstance(aliases, list)
        pairs += (f"{alias} = {row['id']}" for alias in aliases)
    return f"aliases: {', '.join(pairs) or 'none'}"


def model_rows(
    config: UserConfig, credentials: Credentials | None, catalog: Catalog | None = None
) -> list[dict[str, object]]:
    catalog = catalog or load_catalog()
    rows: list[dict[str, object]] = []
    for spec in catalog:
        reasons = availability(spec, credentials)
        path = spec.gguf_path()
        retired = spec.retired()
        rows.append(
            {
                "id": spec.id,
                "aliases": list(spec.aliases),
                "context_window": spec.context_window,
                "max_output": spec.max_output,
                "total_context": spec.total_context,
                "family": spec.family,
                "reasoning": spec.reasoning,
                "precision": _file_precision(spec) or spec.precision,
                "gguf": str(path) if path else None,
                "backends": {
                    name: {"available": why is None, "reason": why} for name, why in reasons.items()
                },
                "description": spec.description,
                "capabilities": list(spec.capabilities),
                "retirement": spec.retirement,
                "retired": retired,
                "use_instead": catalog.successor_for(spec) if retired else None,
            }
        )
    return rows


def catalog_age(catalog: Catalog, now: datetime | None = None) -> str:
    """One line: how old the Workers AI part of the catalog is."""
    if not catalog.refreshed:
        return (
            "Workers AI models: the built-in list (never refreshed; "
            "`wai models --refresh` reads the account's)"
        )
    parts = [
        f"refreshed {r.age(now)} ago ({r.fetched_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC) from {r.source}, "
        f"{counted(len(r.models), 'model')}"
        for r in catalog.refreshed
    ]
    return f"Workers AI models: {'; '.join(parts)}"


def refresh_catalog(notifier: Notifier) -> WaiError | None:
    """Read and store the account's current models; the failure, if any, already told."""
    from wai.backends.workers_ai import models as workers_ai_models
    from wai.store import catalogs

    config = load_user_config()
    credentials = load_credentials(config)
    providers = config.providers(skip_bad_environment=lambda _: None)  # the listing says why
    failure: WaiError | None = None
    if providers:
        from wai.backends.openai.models import refresh_providers

        failure = refresh_providers(providers, notifier)
        if credentials is None:  # the providers are what there is to refresh
            return failure
    try:
        if credentials is None:
            raise ConfigError(MISSING_CREDENTIALS.format(path=wai_home() / "config.toml"))
        refreshed = workers_ai_models.refresh(credentials)
        path = catalogs.save(refreshed)
    except WaiError as error:
        notifier.error(f"cannot refresh the catalog: {error}; the catalog below is the one wai had")
        return error
    for refusal in refreshed.refused:
        notifier.warn(f"{refusal}; left out")
    known = load_catalog().models
    unusable = sum(1 for m in refreshed.models if m.window is None and m.id not in known)
    left_out = (
        f"; {unusable} without a published window left out (give one in your models.toml)" if unusable else ""
    )
    count = len(refreshed.models)
    models = f"{count} text-generation model{'' if count == 1 else 's'}"
    notifier.info(f"read {models} from {refreshed.source}{left_out}; kept in {path}")
    return failure  # a provider that could not be refreshed was told, and fails the command


def show_models(*, json_output: bool, refresh: bool = False, notifier: Notifier | None = None) -> int:
    from wai.catalog.resolve import default_model_name
    from wai.render.failure_json import error_of

    notifier = notifier or Notifier()
    failure = refresh_catalog(notifier) if refresh else None
    catalog = load_catalog()
    for note in catalog.notes:
        notifier.warn(note)
    code = failure.exit_code if failure is not None else EXIT_OK
    config = load_user_config()
    credentials = load_credentials(config)
    rows = model_rows(config, credentials, catalog)
    from wai.backends.openai.models import provider_rows

    served = provider_rows(config.providers(skip_bad_environment=notifier.warn), catalog)
    offload = _gpu_offload()
    age = catalog_age(catalog)
    default = default_model_line(config, credentials)
    if json_output:
        refreshed = [
            {
                "provider": r.name,
                "fetched_at": r.fetched_at.isoformat(),
                "source": r.source,
                "models": len(r.models),
            }
            for r in catalog.refreshed
        ]
        document = {
            "models": rows,
            "default_model": default_model_name(config, credentials),
            "refreshed": refreshed,
            "catalog_age": age,
            "local_runtime": offload,
            "provider_models": served,
            # A refresh that failed: the catalog above is the one wai had.
            "error": error_of(failure) if failure is not None else None,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return code
    current = [row for row in rows if not row["retired"]]
    retired = [row for row in rows if row["retired"]]
    if not sys.stdout.isatty():
        _write_plain(current, retired)
        sys.stdout.write(f"{aliases_line(rows)}\n{default}\n{age}\n{offload}\n")
        _write_providers(served)
        return code
    _print_tables(current, retired, [aliases_line(rows), default], age, offload)
    _write_providers(served)
    return code


def _write_providers(served: list[dict[str, object]]) -> None:
    """Each provider model: its windows and where they come from, one line each."""
    if not served:
        return
    from wai.terminal.safe_text import for_terminal

    lines = ["provider models (wai ask -m NAME:MODEL):"]
    for row in served:
        lines.append(
            f"  {row['id']}  in {row['context_window']}  out {row['max_output']}  "
            f"total {row['total_context']}  ({row['windows_from']})"
        )
    sys.stdout.write(for_terminal("\n".join(lines) + "\n", sys.stdout))


def _columns() -> tuple[str, ...]:
    """The backends a catalog model gets a column for, in the order "auto" prefers them."""
    from wai.backends.registry import backend_class, backend_names

    return tuple(name for name in backend_names() if backend_class(name).in_catalog)


def _header() -> tuple[str, ...]:
    return ("model", "in", "out", "total", "precision", *_columns())


def _cells(rows: list[dict[str, object]]) -> list[tuple[str, ...]]:
    lines: list[tuple[str, ...]] = []
    for row in rows:
        backends = row["backends"]
        assert isinstance(backends, dict)
        state = [
            "yes" if backends[name]["available"] else f"no: {backends[name]['reason']}" for name in _columns()
        ]
        lines.append(
            (
                str(row["id"]),
                str(row["context_window"]),
                str(row["max_output"]),
                str(row["total_context"]),
                str(row["precision"] or "-"),
                *state,
            )
        )
    return lines


def _retired_note(row: dict[str, object]) -> str:
    instead = f", use {row['use_instead']} instead" if row["use_instead"] else ""
    return f"retired on Workers AI since {row['retirement']}{instead}"


def _write_plain(current: list[dict[str, object]], retired: list[dict[str, object]]) -> None:
    """A pipe gets one line per model, never wrapped, so grep and cut work on it; the retired ones
    come after a line of their own, each with its retirement day and what to use instead."""
    header = _header()
    lines = [header, *_cells(current)]
    retired_lines = _cells(retired)
    everything = lines + retired_lines
    widths = [max(len(line[i]) for line in everything) for i in range(len(header))]

    def write(line: tuple[str, ...], note: str = "") -> None:
        cells = [
            cell.rjust(w) if 1 <= i <= 3 else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(line[:-1], widths, strict=False))
        ]
        last = line[-1].ljust(widths[-1]) + "  " + note if note else line[-1]
        sys.stdout.write("  ".join(cells) + "  " + last.rstrip() + "\n")

    for line in lines:
        write(line)
    if retired:
        sys.stdout.write("retired on Workers AI (the local backend still runs those with a gguf file):\n")
        for line, row in zip(retired_lines, retired, strict=True):
            write(line, _retired_note(row))


def _print_tables(
    current: list[dict[str, object]],
    retired: list[dict[str, object]],
    facts: list[str],
    age: str,
    offload: str,
) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from wai.terminal.safe_text import terminal_safe

    def text(value: str) -> str:
        """A name from a catalog or a server, shown as itself: no control characters, no markup."""
        return escape(terminal_safe(value))

    # A terminal gets one short column for what can serve each model now, and the reasons
    # summed up below, so the table fits 80 columns without breaking an id; the pipe and JSON
    # forms give every model's reasons in full.
    console = Console()
    wide = console.width >= 100
    why_not: dict[str, Counter[str]] = {name: Counter() for name in _columns()}

    def serving(line: tuple[str, ...]) -> str:
        names = []
        for name, verdict in zip(_columns(), line[5:], strict=True):
            if verdict == "yes":
                names.append(name)
            else:
                why_not[name][_short(verdict)] += 1
        return f"[green]{' + '.join(names)}[/]" if names else "[dim]no[/]"

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("model", no_wrap=True)
    for name in ("in", "out", *(("total",) if wide else ())):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("prec", no_wrap=True)
    table.add_column("runs now", no_wrap=True)
    for line in _cells(current):
        model_id, window, output, total, precision = line[:5]
        table.add_row(
            text(model_id), window, output, *((total,) if wide else ()), text(precision), serving(line)
        )
    console.print(table)
    if retired:
        console.print(
            "[bold]retired on Workers AI[/] [dim](the local backend still runs those with a gguf)[/]"
        )
        old = Table(box=None, pad_edge=False, header_style="bold")
        old.add_column("model", no_wrap=True)
        old.add_column("since", no_wrap=True)
        old.add_column("runs now", no_wrap=True)
        if wide:
            old.add_column("use instead", no_wrap=True)
        instead: dict[str, list[str]] = {}
        for line, row in zip(_cells(retired), retired, strict=True):
            successor = str(row["use_instead"] or "-")
            old.add_row(
                text(line[0]), str(row["retirement"]), serving(line), *((text(successor),) if wide else ())
            )
            if row["use_instead"]:
                instead.setdefault(successor, []).append(line[0].rsplit("/", 1)[-1])
        console.print(old)
        if not wide:  # a whole id per successor, never folded, rather than a column too narrow for it
            for successor, names in instead.items():
                console.print(f"[dim]use[/] {text(successor)} [dim]instead of {text(', '.join(names))}[/]")
    for name, reasons in why_not.items():
        if reasons:
            summary = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
            console.print(f"[dim]not {name}: {text(summary)}[/]")
    aliases, default = facts
    console.print(terminal_safe(aliases), style="dim", markup=False, highlight=False)
    console.print(terminal_safe(default), markup=False, highlight=False)
    console.print(
        f"[dim]remote needs CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN; local files live in "
        f"{text(str(models_dir()))}; `wai setup` installs the built-in ones; `--json` has every reason[/]"
    )
    console.print(f"[dim]{text(age)}[/]")
    console.print(f"[dim]{text(offload)}[/]")


def _short(reason: str) -> str:
    """A few words for why a backend cannot serve a model (the JSON and pipe forms say it in full)."""
    for start, short in (
        ("no: no credentials", "without credentials"),
        ("no: retired", "retired"),
        ("no: not served", "not served by Workers AI"),
        ("no: no gguf", "with no gguf in the catalog"),
    ):
        if reason.startswith(start):
            return short
    if reason.endswith(" is missing"):
        return "whose file is missing"
    return reason.removeprefix("no: ")

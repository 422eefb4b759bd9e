"""`wai models`: the catalog as a table or JSON, with what can serve each model right now."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

from wai.backends.select import availability
from wai.catalog import ModelSpec, load_catalog
from wai.errors import EXIT_OK
from wai.settings import Credentials, UserConfig, load_credentials, load_user_config, models_dir


def _file_precision(spec: ModelSpec) -> str | None:
    path = spec.gguf_path()
    if path is None or not path.is_file():
        return None
    from wai.backends.gguf_info import read_gguf_info
    from wai.errors import WaiError

    try:
        return read_gguf_info(path).file_type
    except WaiError:
        return "unreadable"


def _gpu_offload() -> str:
    from wai.backends.llama import LlamaBackend
    from wai.errors import WaiError

    try:
        facts = LlamaBackend().describe()
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

    from wai.backends import llama_check
    from wai.settings import wai_home

    verdict = llama_check.current_verdict(wai_home())
    if verdict is None:
        return "not checked on this CPU yet (`wai setup` checks it)"
    if not verdict.ok:
        return f"FAILED its check: {verdict.problem}; {llama_check.REBUILD_HINT}"
    when = datetime.fromtimestamp(verdict.checked_at).strftime("%Y-%m-%d %H:%M")
    return f"checked on this CPU {when} ({' '.join(verdict.features)})"


def default_model_line(config: UserConfig, credentials: Credentials | None) -> str:
    """Which model `wai ask` uses without -m, and why."""
    from wai.models_resolve import BUILTIN_MODEL, DEFAULT_REMOTE_MODEL, default_model_name

    name = default_model_name(config, credentials)
    if os.environ.get("WAI_MODEL"):
        why = "set by WAI_MODEL"
    elif config.text("default_model"):
        why = f"set by default_model in {config.path}"
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


def model_rows(config: UserConfig, credentials: Credentials | None) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for spec in load_catalog():
        reasons = availability(spec, credentials)
        path = spec.gguf_path()
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
            }
        )
    return rows


def show_models(*, json_output: bool) -> int:
    from wai.models_resolve import default_model_name

    config = load_user_config()
    credentials = load_credentials(config)
    rows = model_rows(config, credentials)
    offload = _gpu_offload()
    default = default_model_line(config, credentials)
    if json_output:
        document = {
            "models": rows,
            "default_model": default_model_name(config, credentials),
            "local_runtime": offload,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return EXIT_OK
    header: tuple[str, ...] = ("model", "in", "out", "total", "precision", "remote", "local")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        backends = row["backends"]
        assert isinstance(backends, dict)
        state = [
            "yes" if backends[name]["available"] else f"no: {backends[name]['reason']}"
            for name in ("remote", "local")
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
    if not sys.stdout.isatty():
        # A pipe gets one line per model, never wrapped, so grep and cut work on it.
        widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
        for line in lines:
            cells = [
                cell.rjust(w) if 1 <= i <= 3 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=False))
            ]
            sys.stdout.write("  ".join(cells) + "  " + line[-1] + "\n")
        sys.stdout.write(f"{aliases_line(rows)}\n{default}\n{offload}\n")
        return EXIT_OK
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from wai.render.terminal_safe import terminal_safe

    def text(value: str) -> str:
        """A name from a catalog or a server, shown as itself: no control characters, no markup."""
        return escape(terminal_safe(value))

    # A terminal gets one short column for what can serve each model now, and the reasons
    # summed up below, so the table fits 80 columns without breaking an id; the pipe and JSON
    # forms above give every model's reasons in full.
    console = Console()
    wide = console.width >= 100
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("model", no_wrap=True)
    for name in ("in", "out", *(("total",) if wide else ())):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("prec", no_wrap=True)
    table.add_column("runs now", no_wrap=True)
    why_not: dict[str, Counter[str]] = {"remote": Counter(), "local": Counter()}
    for line in lines[1:]:
        model_id, window, output, total, precision, remote, local = line
        serving = []
        for name, verdict in (("remote", remote), ("local", local)):
            if verdict == "yes":
                serving.append(name)
            else:
                why_not[name][_short(verdict)] += 1
        now = f"[green]{' + '.join(serving)}[/]" if serving else "[dim]no[/]"
        table.add_row(text(model_id), window, output, *((total,) if wide else ()), text(precision), now)
    console.print(table)
    for name, reasons in why_not.items():
        if reasons:
            summary = "; ".join(f"{count} {reason}" for reason, count in reasons.most_common())
            console.print(f"[dim]not {name}: {text(summary)}[/]")
    console.print(terminal_safe(aliases_line(rows)), style="dim", markup=False, highlight=False)
    console.print(terminal_safe(default), markup=False, highlight=False)
    console.print(
        f"[dim]remote needs CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN; local files live in "
        f"{text(str(models_dir()))}; `wai setup` installs the built-in ones; `--json` has every reason[/]"
    )
    console.print(f"[dim]{text(offload)}[/]")
    return EXIT_OK


def _short(reason: str) -> str:
    """A few words for why a backend cannot serve a model (the JSON and pipe forms say it in full)."""
    for start, short in (
        ("no: no credentials", "without credentials"),
        ("no: not served", "not served by Workers AI"),
        ("no: no gguf", "with no gguf in the catalog"),
    ):
        if reason.startswith(start):
            return short
    if reason.endswith(" is missing"):
        return "whose file is missing"
    return reason.removeprefix("no: ")

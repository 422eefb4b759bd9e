"""Refreshed catalogs: what a live model list said (Workers AI's, a provider's), kept in `$WAI_HOME/catalogs`.

A refresh (`wai models --refresh`) reads a provider's list, turns each model into ModelFacts and
saves them here with the time they were read; `catalog.load_catalog` merges them between the
built-in catalog and the user's own file. Nothing here knows one provider's wire format: a
provider's refresh hands over facts, and this module stores them and says what they mean as
catalog entries.

The file is written beside its place and renamed over it, so a refresh that fails half way (or a
full disk, or a kill) leaves the previous refresh whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from wai import settings
from wai.errors import ConfigError
from wai.pricing import Price, price_from_table

FORMAT = 1

# A model the built-in catalog does not know gets this much of its published window (prompt plus
# reply together) as its output window: half of it, at most MAX_OUTPUT_CAP tokens, or at most
# MAX_REASONING_OUTPUT_CAP for a reasoning model, whose thinking counts against it. Half leaves a
# prompt of half the window its whole reply budget; the caps match what the built-in catalog
# allows the large-window models, so a short question never asks for a 100k-token reply.
MAX_OUTPUT_CAP = 8192
MAX_REASONING_OUTPUT_CAP = 32768

# More tokens than any model's window comes near (the largest published are a few million): a
# listing that says more is wrong, and a window taken from it would promise what no server has.
MOST_TOKENS = 100_000_000
_SHOWN_FIGURE = 60  # characters of a refused figure quoted in its warning
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")

# The tokenizer family a model id implies, for exact counting (vocabularies of windows/vocabularies.py). The
# first pattern that matches the model's name (the id's last segment) wins; none is a guess the
# estimate is safer than: Llama 4, Gemma, Mistral, gpt-oss and the rest tokenize otherwise.
_FAMILY_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(meta-)?llama-2-"), "llama-2"),
    (re.compile(r"^(meta-)?llama-3(\.\d+)?-"), "llama-3"),
    # Qwen2, Qwen2.5, QwQ, Qwen3 and the R1 distillations into Qwen share Qwen2's vocabulary.
    (re.compile(r"^(qwen2|qwen2\.5|qwq|qwen3)-|^deepseek-r1-distill-qwen-"), "qwen2"),
)


class StoredCatalogError(ValueError):
    """A stored refresh that cannot be read back (damaged or from another version)."""


class ImplausibleFigure(ValueError):
    """A figure of a listing that no model has: its message names the figure and says why."""


def tokens_figure(key: str, value: object) -> int | None:
    """A number of tokens as a listing gives it under `key` (a whole number, or a string of one
    such as "128000"); None when it gives none (absent, null, ""). ImplausibleFigure when it gives
    something else: not a whole number, or not from 1 to MOST_TOKENS."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    tokens: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        tokens = value
    elif isinstance(value, float) and value.is_integer():
        tokens = int(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "")
        if _WHOLE_NUMBER.fullmatch(text):
            # Python refuses to read thousands of digits; a dozen are already too many tokens.
            tokens = int(text) if len(text) <= 12 else MOST_TOKENS + 1
    if tokens is None or not 1 <= tokens <= MOST_TOKENS:
        shown = repr(value) if not isinstance(value, str) else value.strip()
        if len(shown) > _SHOWN_FIGURE:
            shown = shown[: _SHOWN_FIGURE - 1] + "…"
        raise ImplausibleFigure(
            f"a {key} of {shown}, not a number of tokens (a whole number from 1 to {MOST_TOKENS})"
        )
    return tokens


def check_parts(window: int, parts: Mapping[str, int | None]) -> None:
    """Each part of a window (the input or output window, by the listing's name for it) within the
    whole of it; ImplausibleFigure for one larger."""
    for key, part in parts.items():
        if part is not None and part > window:
            raise ImplausibleFigure(f"a {key} of {part}, more than its whole window of {window}")


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What a provider publishes about one model.

    window: prompt plus reply tokens (Cloudflare's `context_window`), None when not published;
    max_input, max_output: the input and output windows where the server publishes them apart
    (`max_input_tokens`, `max_output_tokens`: older Workers AI models, `wai serve`);
    retirement: the day it is (or was) retired, YYYY-MM-DD; capabilities: flags such as
    "reasoning" or "function_calling".
    """

    id: str
    window: int | None = None
    max_input: int | None = None
    max_output: int | None = None
    retirement: str | None = None
    capabilities: tuple[str, ...] = ()
    description: str = ""
    price: Price | None = None  # the listing's `price`, USD per million tokens


@dataclass(frozen=True, slots=True)
class RefreshedCatalog:
    name: str  # the list's: "workers-ai", "provider-NAME"; a file name, so a plain word
    fetched_at: datetime  # timezone-aware
    source: str  # where it was read (no secrets): shown by `wai models`
    models: tuple[ModelFacts, ...]
    # Models the listing gave figures no model has ("NAME: why"), left out; told, never stored.
    refused: tuple[str, ...] = ()

    def age(self, now: datetime | None = None) -> str:
        """How long ago it was read, in words: "3 days", "5 minutes"."""
        seconds = max(0.0, ((now or datetime.now(UTC)) - self.fetched_at).total_seconds())
        for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
            if seconds >= size:
                count = int(seconds // size)
                return f"{count} {unit}{'s' if count != 1 else ''}"
        return "less than a minute"


def store_dir() -> Path:
    return settings.wai_home() / "catalogs"


def store_path(name: str) -> Path:
    return store_dir() / f"{name}.json"


def save(refreshed: RefreshedCatalog) -> Path:
    """Write the refresh atomically; the previous one stays whole if this fails."""
    path = store_path(refreshed.name)
    data = {
        "format": FORMAT,
        "provider": refreshed.name,  # the file's key, as earlier versions of wai wrote it
        "fetched_at": refreshed.fetched_at.isoformat(),
        "source": refreshed.source,
        "models": [
            {
                "id": m.id,
                "window": m.window,
                "max_input": m.max_input,
                "max_output": m.max_output,
                "retirement": m.retirement,
                "capabilities": list(m.capabilities),
                "description": m.description,
                **({"price": m.price.as_dict()} if m.price is not None else {}),
            }
            for m in refreshed.models
        ],
    }
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise ConfigError(
            f"cannot save the refreshed catalog in {path.parent} ({exc.strerror or exc}); "
            "the previous one is unchanged"
        ) from None
    return path


def load(name: str) -> RefreshedCatalog | None:
    """The last refresh of the list `name`, None when there is none; StoredCatalogError when damaged."""
    path = store_path(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StoredCatalogError(f"{path} cannot be read ({exc})") from None
    try:
        return _from_json(data, name)
    except (KeyError, TypeError, ValueError) as exc:
        raise StoredCatalogError(f"{path} is not a refreshed catalog wai can read ({exc})") from None


def _from_json(data: object, name: str) -> RefreshedCatalog:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError("unknown format")
    fetched_at = datetime.fromisoformat(str(data["fetched_at"]))
    if fetched_at.tzinfo is None:
        raise ValueError("fetched_at has no time zone")
    models: list[ModelFacts] = []
    for raw in data["models"]:
        window, parts = _stored_windows(raw)
        retirement = raw.get("retirement")
        models.append(
            ModelFacts(
                id=str(raw["id"]),
                window=window,
                max_input=parts["max_input"],
                max_output=parts["max_output"],
                retirement=parse_day(retirement) if retirement is not None else None,
                capabilities=tuple(str(c) for c in raw.get("capabilities", [])),
                description=str(raw.get("description", "")),
                price=price_from_table(raw["price"]) if raw.get("price") is not None else None,
            )
        )
    return RefreshedCatalog(
        name=name, fetched_at=fetched_at, source=str(data.get("source", "")), models=tuple(models)
    )


def _stored_windows(raw: Mapping[str, object]) -> tuple[int | None, dict[str, int | None]]:
    """A stored model's window and its parts, held to what a refresh takes (ValueError else)."""
    for key in ("window", "max_input", "max_output"):
        if isinstance(raw.get(key), (bool, str, float)):
            raise ValueError(f"model {raw.get('id')!r}: bad {key} {raw.get(key)!r}")
    try:
        window = tokens_figure("window", raw.get("window"))
        parts = {key: tokens_figure(key, raw.get(key)) for key in ("max_input", "max_output")}
        if window is not None:
            check_parts(window, parts)
    except ImplausibleFigure as exc:
        raise ValueError(f"model {raw.get('id')!r}: {exc}") from None
    if window is None and any(part is not None for part in parts.values()):
        raise ValueError(f"model {raw.get('id')!r}: a part of a window without the window")
    return window, parts


def parse_day(value: object) -> str:
    """A day as YYYY-MM-DD, from a date or the date part of a timestamp ("2026-05-30T00:00:00Z")."""
    text = str(value).strip()
    day = date.fromisoformat(text[:10])  # ValueError for anything else
    return day.isoformat()


def output_window(window: int, *, reasoning: bool = False) -> int:
    """The output window of a model known only by its published window (see MAX_OUTPUT_CAP)."""
    cap = MAX_REASONING_OUTPUT_CAP if reasoning else MAX_OUTPUT_CAP
    return max(1, min(cap, window // 2))


def guess_family(model_id: str) -> str | None:
    """The tokenizer family a model's id implies, None where no known vocabulary fits."""
    name = model_id.rsplit("/", 1)[-1].lower()
    for pattern, family in _FAMILY_PATTERNS:
        if pattern.search(name):
            return family
    return None


# Capabilities a listing never states (Cloudflare's model properties have no JSON mode): what the
# catalog knew of them stays when a refresh replaces a model's capabilities.
UNLISTED_CAPABILITIES = ("json_mode",)


def _unlisted(known: object) -> list[str]:
    capabilities = getattr(known, "capabilities", ())
    return [c for c in UNLISTED_CAPABILITIES if c in capabilities]


def catalog_entries(refreshed: RefreshedCatalog, known: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """The refresh as models.toml entries, to merge over the catalog so far (`known` ids).

    A published window becomes total_context, and context_window too (Cloudflare's one number
    covers prompt and reply together; the window policy keeps room for the reply) unless the
    input window is published apart (max_input); a published output window becomes max_output.
    The capability "reasoning" becomes `reasoning = true`. A model the catalog does not know yet
    also gets an output window (the published one, else output_window), a family guessed from its
    id, and its description; one without a published window is left out, as nothing says what fits.

    A known model with its own weights (a `gguf`) keeps its windows: the local backend runs it
    within the file's and its entry's, and a listing (from `wai serve` on a smaller machine, say)
    says what some server allows, not what the file can do. Such a server refuses what does not
    fit its own windows (413/5021).
    """
    entries: dict[str, dict[str, object]] = {}
    for facts in refreshed.models:
        new = facts.id not in known
        if new and facts.window is None:
            continue
        # The account lists it, so the remote backend serves it, whatever its id looks like.
        entry: dict[str, object] = {"remote": True}
        if facts.window is not None and not _has_weights(known.get(facts.id)):
            entry["total_context"] = facts.window
            entry["context_window"] = facts.max_input or facts.window
            if facts.max_output is not None:
                entry["max_output"] = facts.max_output
        if facts.retirement is not None:
            entry["retirement"] = facts.retirement
        reasoning = "reasoning" in facts.capabilities
        if facts.capabilities:
            entry["capabilities"] = [*facts.capabilities, *_unlisted(known.get(facts.id))]
        if reasoning:
            entry["reasoning"] = True
        if facts.price is not None:
            entry["price"] = {k: v for k, v in facts.price.as_dict().items() if v is not None}
        if new:
            assert facts.window is not None
            entry.setdefault("max_output", output_window(facts.window, reasoning=reasoning))
            family = guess_family(facts.id)
            if family is not None:
                entry["family"] = family
            entry["description"] = _short(facts.description)
        entries[facts.id] = entry
    return entries


def _has_weights(spec: object) -> bool:
    return bool(getattr(spec, "gguf", None))


def _short(description: str) -> str:
    """A provider's description cut to its first sentence, one line, for `wai models`."""
    text = " ".join(description.split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first if len(first) <= 100 else first[:99] + "…"

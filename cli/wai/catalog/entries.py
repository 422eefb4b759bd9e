"""The model catalog, validated into ModelSpecs: the built-in models.toml, then the refreshed
catalogs (`wai models --refresh`, see store/catalogs.py), then the user's own file on top."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from wai import settings
from wai.errors import ConfigError
from wai.pricing import Price, price_from_table
from wai.store.catalogs import MOST_TOKENS
from wai.toml_files import parse_toml, read_toml

if TYPE_CHECKING:
    from wai.store.catalogs import RefreshedCatalog

REMOTE_PREFIXES = ("@cf/", "@hf/")
# The providers whose live lists `wai models --refresh` keeps, merged in this order.
REFRESHED_LISTS = ("workers-ai",)  # the live lists merged into the catalog (Workers AI's)

_INT_KEYS = ("context_window", "max_output", "total_context")
_STR_KEYS = ("gguf", "family", "precision", "description", "successor")
_BOOL_KEYS = ("remote", "reasoning")
_KNOWN_KEYS = frozenset(
    (*_INT_KEYS, *_STR_KEYS, *_BOOL_KEYS, "aliases", "retirement", "capabilities", "price")
)


AssumedWindows = Literal["now", "before"]  # see ModelSpec.assumed_windows


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model and its windows.

    context_window: most input (prompt) tokens; max_output: most generated tokens;
    total_context: most prompt + reply tokens at once (the model's trained context).
    reasoning: the model thinks before it answers (its thinking counts against max_tokens) and
    takes `reasoning_effort`.
    """

    id: str
    context_window: int
    max_output: int
    total_context: int
    remote: bool
    gguf: str | None = None
    family: str | None = None
    precision: str | None = None
    description: str = ""
    aliases: tuple[str, ...] = ()
    source: str = ""
    reasoning: bool = False
    retirement: str | None = None  # YYYY-MM-DD: the day Workers AI retires (or retired) it
    successor: str | None = None  # a current model to use instead once it is retired
    capabilities: tuple[str, ...] = ()  # "reasoning", "function_calling", ... as published
    provider: str | None = None  # the [providers.NAME] serving it; the id is then NAME:MODEL
    # The server software behind a provider's model (vllm, llama-server, ollama, wai-serve), when known.
    engine: str | None = None
    # A provider's model whose server told no context: wai assumes its windows, "now" (this run, said
    # in a warning) or "before" (on an earlier run's word: a refresh, a first use); None: told.
    assumed_windows: AssumedWindows | None = None
    # USD per million tokens, where the catalog knows it (models/search's `price`, models.toml);
    # None: no price is known, and none is shown.
    price: Price | None = None

    @property
    def served_name(self) -> str:
        """The name the server knows the model by: a provider model's MODEL, else the id."""
        return self.id.split(":", 1)[1] if self.provider is not None else self.id

    def retired(self, today: date | None = None) -> bool:
        """Whether Workers AI has retired it (its retirement day has come)."""
        if self.retirement is None:
            return False
        return self.retirement <= (today or datetime.now(UTC).date()).isoformat()

    def gguf_path(self) -> Path | None:
        """The local weights, a relative `gguf` resolved against the user's models folder."""
        if not self.gguf:
            return None
        path = Path(self.gguf).expanduser()
        return path if path.is_absolute() else settings.model_file(path)


@dataclass(slots=True)
class Catalog:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    refreshed: list[RefreshedCatalog] = field(default_factory=list)  # the live lists merged in
    notes: list[str] = field(default_factory=list)  # what went wrong reading them, for `wai models`

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def find(self, name: str) -> ModelSpec | None:
        if name in self.models:
            return self.models[name]
        for spec in self.models.values():
            if name in spec.aliases:
                return spec
        return None

    def get(self, name: str) -> ModelSpec:
        spec = self.find(name)
        if spec is None:
            raise ConfigError(
                f"unknown model '{name}'",
                hint="`wai models` lists the catalog; add it to $WAI_HOME/models.toml",
            )
        return spec

    def successor_for(self, spec: ModelSpec) -> str | None:
        """A current model to use instead of a retired one: its entry's `successor` (or the first
        current one down the chain of successors, when that one was retired too), else the first
        current Workers AI model of its family: the same `family` (vocabulary and chat
        format, or none known) and a name that starts with the same word (llama, mistral, ...).
        None when there is no such model: Llama 4 is no successor of Llama 3, nor a Qwen of a
        DeepSeek distilled into Qwen's vocabulary."""
        own = self.models.get(spec.id)  # the catalog's entry knows more than a spec made elsewhere
        successor = spec.successor or (own.successor if own is not None else None)
        # A named successor retired since (a refresh says so) is no current model: its own named
        # successor then, and past the end of that chain the family's current model.
        seen = {spec.id}
        while successor and successor not in seen:
            named = self.models.get(successor)
            if named is None or not named.retired():
                return successor
            seen.add(successor)
            successor = named.successor
        family = spec.family if spec.family is not None or own is None else own.family
        lineage = (family, _name_stem(spec.id))
        for other in self.models.values():
            if (
                other.remote
                and not other.retired()
                and other.id != spec.id
                and (other.family, _name_stem(other.id)) == lineage
            ):
                return other.id
        return None

    def by_gguf(self, path: Path) -> ModelSpec | None:
        """The catalog entry whose weights are this file, if any."""
        target = path.expanduser().resolve()
        for spec in self.models.values():
            own = spec.gguf_path()
            if own is not None and own.expanduser().resolve() == target:
                return spec
        return None


def builtin_catalog_text() -> tuple[str, str]:
    """The built-in models.toml: inside the installed package, or at the source tree's root."""
    packaged = resources.files("wai").joinpath("models.toml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8"), str(packaged)
    in_tree = Path(__file__).resolve().parents[3] / "models.toml"
    return in_tree.read_text(encoding="utf-8"), str(in_tree)


def user_catalog_path() -> Path:
    explicit = os.environ.get("WAI_MODELS")
    return Path(explicit).expanduser() if explicit else settings.wai_home() / "models.toml"


def load_catalog() -> Catalog:
    """The built-in catalog, then the refreshed ones, then the user's file on top (the user wins)."""
    catalog = Catalog()
    text, where = builtin_catalog_text()
    _merge(catalog, _models(parse_toml(text.encode("utf-8"), where), where), where)
    _merge_refreshed(catalog)
    user_path = user_catalog_path()
    user_data = read_toml(user_path)
    if user_data is None:
        if "WAI_MODELS" in os.environ:
            raise ConfigError(f"WAI_MODELS names {user_path}, which does not exist")
        return catalog
    _merge(catalog, _models(user_data, str(user_path)), str(user_path))
    return catalog


def _merge_refreshed(catalog: Catalog) -> None:
    """Each live list's last refresh, if any. A damaged store is noted, never fatal: the catalog
    without it still serves, and the next refresh replaces it."""
    from wai.store import catalogs

    for name in REFRESHED_LISTS:
        try:
            refreshed = catalogs.load(name)
        except catalogs.StoredCatalogError as exc:
            catalog.notes.append(f"{exc}; `wai models --refresh` replaces it")
            continue
        if refreshed is None:
            continue
        where = str(catalogs.store_path(name))
        try:
            _merge(catalog, catalogs.catalog_entries(refreshed, catalog.models), where)
        except ConfigError as exc:  # a value no ModelSpec takes: the refresh is set aside whole
            catalog.notes.append(f"{exc}; `wai models --refresh` replaces it")
            continue
        catalog.refreshed.append(refreshed)


def _models(data: Mapping[str, object], where: str) -> Mapping[str, object]:
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"{where}: 'models' must be a table of [models.\"ID\"] entries")
    return models


def has_control_character(name: str) -> bool:
    """Whether `name` holds a C0 or C1 control character or DEL: no model's name does, and shown
    it would break or rewrite the line that names it."""
    if name.isascii() and name.isprintable():  # every catalog id: no loop over its characters
        return False
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name)


def model_id_problem(model_id: str) -> str | None:
    """Why this id cannot be one model's path in a Workers AI URL; None when it can.

    Escaping keeps `#` and `?` inside the path, but `.` and `..` segments would still be resolved
    by the URL and leave the run route, and control characters have no business in a name.
    """
    if has_control_character(model_id):
        return "it contains a control character"
    segments = model_id.split("/")
    if any(not segment for segment in segments):
        return "it has an empty path segment"
    if any(segment in (".", "..") for segment in segments):
        return "it has a '.' or '..' path segment"
    return None


def _merge(catalog: Catalog, models: Mapping[str, object], where: str) -> None:
    """Every entry of one layer over the catalog so far; nothing changes when one is wrong."""
    merged: dict[str, ModelSpec] = {}
    for model_id, raw in models.items():
        problem = model_id_problem(model_id)
        if problem is not None:
            raise ConfigError(f"{where}: model {model_id!r} is not a usable id: {problem}")
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: model '{model_id}' must be a table")
        base = catalog.models.get(model_id)
        merged[model_id] = _spec(model_id, raw, base, where)
    catalog.models.update(merged)
    catalog.sources.append(where)
    _settle_aliases(catalog, models, where)


def _settle_aliases(catalog: Catalog, models: Mapping[str, object], where: str) -> None:
    """An alias this file gives is that model's alone: taken from any model that had it before
    (the user's `aliases` win over the built-in ones), never another model's id, never two models'."""
    given: dict[str, str] = {}
    for model_id, raw in models.items():
        if not isinstance(raw, dict) or "aliases" not in raw:
            continue
        for alias in catalog.models[model_id].aliases:
            if alias in catalog.models and alias != model_id:
                raise ConfigError(
                    f"{where}: model '{model_id}', key 'aliases': '{alias}' is the id of another model"
                )
            if given.get(alias, model_id) != model_id:
                raise ConfigError(
                    f"{where}: model '{model_id}', key 'aliases': '{alias}' is also an alias of "
                    f"'{given[alias]}'"
                )
            given[alias] = model_id
    for other_id, spec in catalog.models.items():
        taken = [a for a in spec.aliases if given.get(a, other_id) != other_id]
        if taken:
            kept = tuple(a for a in spec.aliases if a not in taken)
            catalog.models[other_id] = replace(spec, aliases=kept)


def _spec(model_id: str, raw: dict[str, object], base: ModelSpec | None, where: str) -> ModelSpec:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: model '{model_id}', key '{key}': {why}")

    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        key = sorted(unknown)[0]
        return_known = ", ".join(sorted(_KNOWN_KEYS))
        raise bad(key, f"unknown key (known keys: {return_known})")

    ints: dict[str, int | None] = {}
    for key in _INT_KEYS:
        value = raw.get(key, getattr(base, key) if base else None)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MOST_TOKENS
        ):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:59] + "…"
            raise bad(key, f"must be a whole number of tokens from 1 to {MOST_TOKENS}, got {shown}")
        ints[key] = value
    strs: dict[str, str | None] = {}
    for key in _STR_KEYS:
        value = raw.get(key, getattr(base, key) if base else None)
        if value is not None and (not isinstance(value, str) or (key != "description" and not value)):
            raise bad(key, f"must be a non-empty string, got {value!r}")
        strs[key] = value
    remote = raw.get("remote", base.remote if base else model_id.startswith(REMOTE_PREFIXES))
    if not isinstance(remote, bool):
        raise bad("remote", f"must be true or false, got {remote!r}")
    reasoning = raw.get("reasoning", base.reasoning if base else False)
    if not isinstance(reasoning, bool):
        raise bad("reasoning", f"must be true or false, got {reasoning!r}")
    aliases = raw.get("aliases", list(base.aliases) if base else [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise bad("aliases", f"must be a list of names, got {aliases!r}")
    capabilities = raw.get("capabilities", list(base.capabilities) if base else [])
    if not isinstance(capabilities, list) or not all(isinstance(c, str) and c for c in capabilities):
        raise bad("capabilities", f"must be a list of names, got {capabilities!r}")
    retirement = raw.get("retirement", base.retirement if base else None)
    if retirement is not None:
        retirement = _day(retirement, bad)

    price = base.price if base else None
    if "price" in raw:
        given = raw["price"]
        if not isinstance(given, dict):
            raise bad("price", f"must be a table such as {{ input = 0.95, output = 4.0 }}, got {given!r}")
        try:
            price = price_from_table(given)
        except ValueError as exc:
            raise bad("price", str(exc)) from None

    context_window, max_output = ints["context_window"], ints["max_output"]
    if context_window is None:
        raise bad("context_window", "missing (most input tokens the model accepts)")
    if max_output is None:
        raise bad("max_output", "missing (most tokens the model may generate)")
    total = ints["total_context"] or context_window + max_output
    if total < context_window:
        raise bad("total_context", f"{total} is smaller than context_window {context_window}")
    precision = strs["precision"]
    return ModelSpec(
        id=model_id,
        context_window=context_window,
        max_output=max_output,
        total_context=total,
        remote=remote,
        gguf=strs["gguf"],
        family=strs["family"],
        precision=precision.lower() if precision else None,
        description=strs["description"] or "",
        aliases=tuple(aliases),
        source=where,
        reasoning=reasoning,
        retirement=retirement,
        successor=strs["successor"],
        capabilities=tuple(capabilities),
        price=price,
    )


def _day(value: object, bad: Callable[[str, str], ConfigError]) -> str:
    """A retirement day: a TOML date, or a YYYY-MM-DD string."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise bad("retirement", f"must be a day as YYYY-MM-DD, got {value!r}")


def _name_stem(model_id: str) -> str:
    """The first word of a model's name: "llama" for @cf/meta/llama-3.1-8b-instruct."""
    name = model_id.rsplit("/", 1)[-1].lower()
    return re.split(r"[^a-z]", name, maxsplit=1)[0]

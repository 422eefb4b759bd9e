"""The backends wai knows, by name, and the one rule that picks a backend for a model.

Each backend is one class (backends/base.py) in a package of its own; `BACKENDS` (names.py) names each
once, in the order "auto" prefers them, and is the only list of backend names there is. A
class is imported when first asked for, and is light: the heavy part of a backend (an HTTP
client, llama.cpp) is imported by its `stream` alone, so choosing costs no start-up time.
`resolve_model` turns what follows -m into a model, asking each backend whether it claims the
name; `choose` decides "auto" for `ask`, `chat`, `tokens` and `--dry-run` alike; `Backends`
makes each backend once for a command and closes what it made.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING

from wai.backends.base import Backend, BackendMode, BackendName, BackendSettings, LocalOptions
from wai.backends.names import BACKENDS, backend_names
from wai.errors import ConfigError

if TYPE_CHECKING:
    from wai.backends.backoff import SharedBackoff
    from wai.catalog.entries import Catalog, ModelSpec
    from wai.settings import Credentials, UserConfig
    from wai.tokens.counters import TokenCounter

__all__ = ["BACKENDS", "BackendSettings", "Backends", "LocalOptions", "backend_names"]

_classes: dict[str, type[Backend]] = {}  # imported so far, by "module:Class"


def backend_class(name: BackendName) -> type[Backend]:
    where = BACKENDS.get(name)
    if where is None:
        raise ConfigError(f"no backend is named {name}", hint=f"use one of: {', '.join(BACKENDS)}")
    if not isinstance(where, str):
        return where
    if where not in _classes:
        module, _, attribute = where.partition(":")
        _classes[where] = getattr(importlib.import_module(module), attribute)
    return _classes[where]


@contextmanager
def registered(name: BackendName, where: str | type[Backend]) -> Iterator[None]:
    """The backend class `where` (or "module:Class") known as `name` for the block (first in the
    order "auto" prefers when the name is new), then the registry as it was: for tests."""
    before = dict(BACKENDS)
    if name in BACKENDS:
        BACKENDS[name] = where
    else:
        rest = dict(BACKENDS)
        BACKENDS.clear()
        BACKENDS.update({name: where, **rest})
    try:
        yield
    finally:
        BACKENDS.clear()
        BACKENDS.update(before)


def backend_named(name: BackendName, settings: BackendSettings | None = None) -> Backend:
    """The backend `name`, made with `settings` (none: to plan with, not to run)."""
    return backend_class(name)(name, settings or BackendSettings())


def _all(credentials: Credentials | None) -> list[Backend]:
    settings = BackendSettings(credentials)
    return [backend_named(name, settings) for name in BACKENDS]


def resolve_model(
    name: str | None,
    catalog: Catalog,
    config: UserConfig,
    credentials: Credentials | None,
    backends: Backends | None = None,
) -> ModelSpec:
    """The model that `name` (what follows -m; None: the default) names: the backend that claims
    the name says (a provider's NAME:MODEL, a GGUF file's path), else the catalog. `backends`:
    the command's, whose connections the claim opens for the turn to reuse."""
    from wai.catalog.resolve import chosen_name, unclaimed

    name, chosen_by = chosen_name(name, config, credentials)
    entry = catalog.find(name)
    with contextlib.ExitStack() as made:
        for candidate_name in BACKENDS:
            if backends is not None:
                candidate = backends.for_planning(candidate_name)
            else:
                candidate = made.enter_context(backend_named(candidate_name, BackendSettings(credentials)))
            found = candidate.claim(name, entry, catalog, config)
            if found is not None:
                return found
    return unclaimed(name, entry, catalog, config, chosen_by)


def availability(spec: ModelSpec, credentials: Credentials | None) -> dict[BackendName, str | None]:
    """For each backend with a catalog column, None when it can serve `spec` right now, else why not."""
    return {b.name: b.unavailable(spec) for b in _all(credentials) if b.in_catalog}


def choose(
    spec: ModelSpec, mode: BackendMode, credentials: Credentials | None, *, sending: bool = True
) -> BackendName:
    """The backend that runs (or, when not `sending`, would run) `spec`: the one rule for "auto".

    A named backend is taken as named; when sending, it must be able to run the model. "auto"
    takes the first backend that can run the model now. When none can: a count or a dry run
    takes the first that serves the model at all (nothing is sent, so nothing is missing);
    a send names what would make one available.
    """
    if mode != "auto":
        named = backend_named(mode, BackendSettings(credentials))
        if sending:
            named.require(spec)
        return mode
    known = _all(credentials)
    for candidate in known:
        if candidate.unavailable(spec) is None:
            return candidate.name
    serving = [b for b in known if b.serves(spec)] or [b for b in known if b.tells_own_failure]
    if not sending and serving:
        return serving[0].name
    if len(serving) == 1 and serving[0].tells_own_failure:
        return serving[0].name
    for candidate in serving:
        refusal = candidate.refusal(spec)
        if refusal is not None:
            raise refusal
    if not serving:
        raise ConfigError(f"no backend can run {spec.id}")
    raise ConfigError(", or ".join(b.remedy(spec) for b in serving))


class Backends:
    """The backends of one command, each made once on demand with the command's settings, so a
    loaded local model or a provider's connection is reused; closes what it made.

    Use as a context manager (`with Backends(...) as backends:`) so a model or a connection is
    freed when the command ends.
    """

    def __init__(
        self,
        credentials: Credentials | None,
        local: LocalOptions,
        *,
        debug: bool = False,
        read_timeout: float | None = None,
        config: UserConfig | None = None,
        backoff: SharedBackoff | None = None,
    ) -> None:
        self.settings = BackendSettings(credentials, local, debug, read_timeout, config, backoff)
        self._made: dict[BackendName, Backend] = {}  # made for this command, opened or not
        self._opened: set[BackendName] = set()

    def __enter__(self) -> Backends:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def counter(self, spec: ModelSpec, name: BackendName) -> TokenCounter:
        """The counter for a run on backend `name`: the backend's own (locally, the very model that
        will answer, which saves loading the file a second time for its vocabulary)."""
        return self.get(name).counter(spec, running=True)

    def for_planning(self, name: BackendName) -> Backend:
        """The backend `name` made with this command's settings, not opened: to plan with (a count,
        a dry run, a model's name resolved) when nothing may run."""
        if name not in self._made:
            self._made[name] = backend_named(name, self.settings)
        return self._made[name]

    def get(self, name: BackendName) -> Backend:
        """The backend `name`, ready to run turns (opened once)."""
        made = self.for_planning(name)
        if name not in self._opened:
            made.open()
            self._opened.add(name)
        return made

    def close(self) -> None:
        """Close every backend made here, newest first."""
        made, self._made = self._made, {}
        self._opened.clear()
        for made_backend in reversed(made.values()):
            made_backend.close()

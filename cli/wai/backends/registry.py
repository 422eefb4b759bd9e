"""The backends wai knows, by name, and the one rule that picks a backend for a model.

Each backend registers a `Registration` from a light module of its own (backends/workers_ai/backend.py,
backends/llama_cpp/backend.py): what it takes to serve a model, how to count a prompt without building it,
and how to build it. The heavy implementation (HTTP client, llama.cpp) is imported only by
`build`, so choosing costs no start-up time. `choose` decides "auto" for `ask`, `chat`, `tokens`
and `--dry-run` alike; `Backends` builds each backend once and closes what it built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from wai.backends.base import BackendMode, BackendName
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.errors import ConfigError, WaiError
from wai.sampling import Sampling, Span, out_of_range
from wai.settings import Credentials

if TYPE_CHECKING:
    from wai.backends.base import Backend
    from wai.windows.counters import TokenCounter

# Registration modules of the built-in backends, in the order "auto" prefers them.
_BUILTIN = (
    "wai.backends.workers_ai.backend",
    "wai.backends.llama_cpp.backend",
    "wai.backends.openai.backend",
)


@dataclass(frozen=True, slots=True)
class LocalOptions:
    gpu_layers: int | None = None
    threads: int | None = None
    debug: bool = False


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """What a backend may be built with: the user's credentials and options."""

    credentials: Credentials | None
    local: LocalOptions
    debug: bool = False


def _same_windows(spec: ModelSpec) -> ModelSpec:
    return spec


def _no_refusal(spec: ModelSpec, credentials: Credentials | None) -> WaiError | None:
    return None


def _runs_any_sampling(sampling: Sampling) -> str | None:
    return None


def _no_prompt_text(spec: ModelSpec, messages: Sequence[Message]) -> str | None:
    return None


def _no_warnings(spec: ModelSpec) -> list[str]:
    return []


@dataclass(frozen=True, slots=True)
class Registration:
    """One backend, as the rest of wai sees it before building it.

    serves: the backend could ever run this model (the catalog entry allows it).
    unavailable: None when it can run the model right now, else why not (for `wai models`).
    require: raises ConfigError when the user names this backend and it cannot run the model.
    remedy: what the user can do so that it runs the model ("set credentials", "put its weights").
    counter: how this backend counts a prompt for the model, without building it (--dry-run).
    windows: the model's windows on this backend (locally: within the file's trained context).
    refusal: the error that says why it will not run the model although it could (a model
        Workers AI retired), None when there is none; told when "auto" finds nothing available.
    tells_own_failure: when "auto" finds nothing available and this is the only backend serving
        the model, it is chosen anyway and its own error says what is missing.
    title: the name users know it by, in panel titles and footers ("Workers AI", "llama.cpp").
    warm_modules: what `wai chat` imports while the user types the first message.
    reasoning_effort: the backend sends a reasoning effort to models the catalog marks reasoning.
    sampling_ranges: the values this backend takes for a sampling option, by name, where they are
        narrower than what wai.sampling accepts (Workers AI's top_k 1 to 50, say).
    unsupported: why the backend cannot run these sampling options for a reason no range says
        (llama.cpp divides by the repetition penalty), None when it can. See `sampling_refusal`.
    prompt_format: how the prompt text of `--dry-run` relates to what the model receives.
    prompt_text: the prompt as text when the counter cannot give it (no vocabulary at hand).
    in_catalog: whether `wai models` gives each catalog model a column for it (a backend that
        serves only models named otherwise, NAME:MODEL of a provider, lists them apart).
    plan_warnings: what to warn of when a model is planned without the backend (a dry run, a
        count): windows assumed, say. A turn hears it from the backend's own `warnings`.
    """

    name: BackendName
    build: Callable[[BackendSettings], Backend]
    serves: Callable[[ModelSpec], bool]
    unavailable: Callable[[ModelSpec, Credentials | None], str | None]
    require: Callable[[ModelSpec, Credentials | None], None]
    remedy: Callable[[ModelSpec], str]
    counter: Callable[[ModelSpec], TokenCounter]
    windows: Callable[[ModelSpec], ModelSpec] = _same_windows
    refusal: Callable[[ModelSpec, Credentials | None], WaiError | None] = _no_refusal
    tells_own_failure: bool = False
    title: str = ""
    warm_modules: tuple[str, ...] = ()
    reasoning_effort: bool = False
    sampling_ranges: Mapping[str, Span] = field(default_factory=dict)
    unsupported: Callable[[Sampling], str | None] = _runs_any_sampling
    prompt_format: str = "as sent"
    prompt_text: Callable[[ModelSpec, Sequence[Message]], str | None] = _no_prompt_text
    in_catalog: bool = True
    plan_warnings: Callable[[ModelSpec], list[str]] = _no_warnings

    def sampling_refusal(self, sampling: Sampling) -> str | None:
        """Why this backend cannot run these sampling options, None when it can."""
        return out_of_range(sampling, self.sampling_ranges, self.title or self.name) or self.unsupported(
            sampling
        )


_REGISTRY: dict[BackendName, Registration] = {}
_loaded = False


def register(registration: Registration) -> None:
    """Make a backend known under its name (a later registration under the same name wins)."""
    _REGISTRY[registration.name] = registration


@contextmanager
def registered(registration: Registration) -> Iterator[Registration]:
    """`registration` in place of the backend of the same name for the block, then the one before."""
    _load_builtins()
    before = _REGISTRY.get(registration.name)
    register(registration)
    try:
        yield registration
    finally:
        if before is None:
            _REGISTRY.pop(registration.name, None)
        else:
            _REGISTRY[registration.name] = before


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN:
            importlib.import_module(module)


def registrations() -> tuple[Registration, ...]:
    """Every known backend, in the order "auto" prefers them."""
    _load_builtins()
    return tuple(_REGISTRY.values())


def registration(name: BackendName) -> Registration:
    _load_builtins()
    return _REGISTRY[name]


def availability(spec: ModelSpec, credentials: Credentials | None) -> dict[BackendName, str | None]:
    """For each backend, None when it can serve `spec` right now, else why not."""
    return {r.name: r.unavailable(spec, credentials) for r in registrations() if r.in_catalog}


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
        if sending:
            registration(mode).require(spec, credentials)
        return mode
    known = registrations()
    for candidate in known:
        if candidate.unavailable(spec, credentials) is None:
            return candidate.name
    serving = [r for r in known if r.serves(spec)] or [r for r in known if r.tells_own_failure]
    if not sending and serving:
        return serving[0].name
    if len(serving) == 1 and serving[0].tells_own_failure:
        return serving[0].name
    for candidate in serving:
        refusal = candidate.refusal(spec, credentials)
        if refusal is not None:
            raise refusal
    if not serving:
        raise ConfigError(f"no backend can run {spec.id}")
    raise ConfigError(", or ".join(r.remedy(spec) for r in serving))


def windows_for(spec: ModelSpec, name: BackendName) -> ModelSpec:
    """The windows a run on backend `name` plans with: locally, never beyond the file's trained context."""
    return registration(name).windows(spec)


class Backends:
    """Builds each backend once, on demand, so a loaded local model is reused; closes what it built.

    Use as a context manager (`with Backends(...) as backends:`) so a model or a connection is
    freed when the command ends.
    """

    def __init__(self, credentials: Credentials | None, local: LocalOptions, *, debug: bool = False) -> None:
        self.settings = BackendSettings(credentials, local, debug)
        self._made: dict[BackendName, Backend] = {}

    def __enter__(self) -> Backends:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def counter(self, spec: ModelSpec, name: BackendName) -> TokenCounter:
        """The counter for a run on backend `name`: the backend's own (locally, the very model that
        will answer, which saves loading the file a second time for its vocabulary)."""
        return self.get(name).counter(spec)

    def get(self, name: BackendName) -> Backend:
        if name not in self._made:
            self._made[name] = registration(name).build(self.settings)
        return self._made[name]

    def close(self) -> None:
        """Close every backend built here, newest first."""
        made, self._made = self._made, {}
        for backend in reversed(made.values()):
            backend.close()

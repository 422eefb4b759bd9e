"""The one class every backend is: all a command needs of it, from choosing it to streaming a reply.

A backend is made cheaply, with the command's settings, and says from then on which models it
claims and can run, how it counts a prompt, a model's windows on it, its option ranges and what
it warns of; the heavy part (an HTTP client, llama.cpp) is imported and built by `stream` only
when a reply is asked for, so choosing and planning cost no start-up time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Self, TypeVar

if TYPE_CHECKING:
    from wai.backends.backoff import SharedBackoff
    from wai.backends.request import Request
    from wai.catalog.entries import Catalog, ModelSpec
    from wai.conversation import Message
    from wai.errors import WaiError
    from wai.events import Event
    from wai.sampling import Sampling, Span
    from wai.schema import Schema
    from wai.settings import Credentials, UserConfig
    from wai.tokens.counters import TokenCounter

K = TypeVar("K")  # what a caller of stream_together knows each request by

# The name a backend is registered under (backends/registry.py), as users pick it with --backend
# and `/backend`, and as the transcript and --json keep it.
BackendName = str
# A BackendName, or "auto": the first backend that can run the model.
BackendMode = str


@dataclass(frozen=True, slots=True)
class LocalOptions:
    gpu_layers: int | None = None
    threads: int | None = None
    debug: bool = False


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """What a backend is made with: the user's credentials and the command's options, as values.

    read_timeout: --read-timeout when given; it bounds a provider's small requests (the model
    list, a count) as well as the chat request. config: the user's config.toml as the command
    read it (its providers); None: read when a backend first needs it.
    """

    credentials: Credentials | None = None
    local: LocalOptions = field(default_factory=LocalOptions)
    debug: bool = False
    read_timeout: float | None = None
    config: UserConfig | None = None
    backoff: SharedBackoff | None = None  # one back-off for every request of the command (batch)


class Backend(ABC):
    """One backend: subclass it once per backend and name the class in the registry.

    Facts (class attributes): `title`, the name users know it by in panel titles and footers;
    `reasoning_effort`, whether it sends a reasoning effort to models the catalog marks reasoning;
    `sampling_ranges`, the values it takes for a sampling option where narrower than what
    wai.sampling accepts; `prompt_format`, how the prompt text of `--dry-run` relates to what the
    model receives; `in_catalog`, whether `wai models` gives each catalog model a column for it;
    `tells_own_failure`, whether "auto" picks it when it alone serves a model it cannot run now,
    so that its own error says what is missing; `warm_modules`, what `wai chat` imports while the
    user types the first message; `bills_neurons`, whether its service bills in Workers AI's
    neurons (a turn's cost is then said in neurons too, and counts against `daily_neurons`).

    `stream` yields Token events as text arrives, then Usage (when known) and exactly one
    Finish. It raises a WaiError subclass for an expected failure; IncompleteReply when the
    stream broke after output began. Closing the iterator (or KeyboardInterrupt inside it)
    stops the work promptly and frees the connection or the model.
    """

    title: ClassVar[str]
    reasoning_effort: ClassVar[bool] = False
    sampling_ranges: ClassVar[Mapping[str, Span]] = {}
    prompt_format: ClassVar[str] = "as sent"
    in_catalog: ClassVar[bool] = True
    tells_own_failure: ClassVar[bool] = False
    warm_modules: ClassVar[tuple[str, ...]] = ()
    # Whether it decodes several requests together (`stream_together`): llama.cpp's batches.
    decodes_together: ClassVar[bool] = False
    bills_neurons: ClassVar[bool] = False

    def __init__(self, name: BackendName, settings: BackendSettings) -> None:
        self.name = name
        self.settings = settings

    # -- which models ---------------------------------------------------------------------------

    def claim(
        self, name: str, entry: ModelSpec | None, catalog: Catalog, config: UserConfig
    ) -> ModelSpec | None:
        """The model `name` (what follows -m) names on this backend, when this backend claims the
        name (a provider's NAME:MODEL, a GGUF file's path); None leaves it to the catalog.
        `entry`: the catalog's model of that name, None when the catalog has none."""
        return None

    @abstractmethod
    def serves(self, spec: ModelSpec) -> bool:
        """The backend could ever run this model (its catalog entry allows it)."""

    @abstractmethod
    def unavailable(self, spec: ModelSpec) -> str | None:
        """None when it can run the model right now, else why not (for `wai models`)."""

    @abstractmethod
    def require(self, spec: ModelSpec) -> None:
        """Raises ConfigError when the user names this backend and it cannot run the model."""

    @abstractmethod
    def remedy(self, spec: ModelSpec) -> str:
        """What the user can do so that it runs the model ("set credentials", "put its weights")."""

    def refusal(self, spec: ModelSpec) -> WaiError | None:
        """Why it will not run a model it could (one Workers AI retired), None when nothing stops it:
        told when "auto" finds no backend available."""
        return None

    # -- planning a turn ------------------------------------------------------------------------

    @abstractmethod
    def counter(self, spec: ModelSpec, *, running: bool = False) -> TokenCounter:
        """How this backend counts a prompt for `spec`: the count the window plan is made with.
        `running`: the backend will run the turn too (locally, counting on the very model that
        answers saves loading the file twice); else nothing but counting is asked of it."""

    def windows(self, spec: ModelSpec) -> ModelSpec:
        """The model's windows on this backend (locally, within the file's trained context)."""
        return spec

    def warnings(self, spec: ModelSpec) -> list[str]:
        """What the user should know before a turn of `spec` is planned or run (stderr), [] when
        nothing: windows assumed, a file at odds with its catalog entry."""
        return []

    def unsupported(self, sampling: Sampling) -> str | None:
        """Why it cannot run these sampling options for a reason no range says (llama.cpp divides
        by the repetition penalty), None when it can."""
        return None

    def sampling_refusal(self, sampling: Sampling) -> str | None:
        """Why this backend cannot run these sampling options, None when it can."""
        from wai.sampling import out_of_range

        return out_of_range(sampling, self.sampling_ranges, self.title) or self.unsupported(sampling)

    def check_schema(self, spec: ModelSpec, schema: Schema, catalog: Catalog | None = None) -> None:
        """Raise UsageError when this backend cannot hold a reply of `spec` to `schema` (`--schema`),
        before anything is loaded or sent (`catalog`: to name models that can). By default a
        backend has no structured output."""
        from wai.errors import UsageError

        raise UsageError(
            f"{schema.option}: the {self.title} backend cannot ask for structured output",
            hint="use the local backend (llama.cpp holds the reply to the schema with a grammar)",
        )

    def prompt_text(self, spec: ModelSpec, messages: Sequence[Message]) -> str | None:
        """The prompt as text when the counter cannot give it (no vocabulary at hand)."""
        return None

    # -- running a turn -------------------------------------------------------------------------

    def open(self) -> None:
        """Make ready to run turns (built once, when a command first asks it to run one); raises the
        WaiError that says what is missing (credentials, say) before a turn begins."""
        return None

    @abstractmethod
    def stream(self, request: Request) -> Iterator[Event]:
        """The reply's events (see the class's account)."""

    def precision(self, request: Request) -> str | None:
        """The weights' precision as llama.cpp names it (q8_0, f16), None when unknown."""
        return request.model.precision

    def stream_together(
        self, requests: Sequence[tuple[K, Request]], slots: int
    ) -> Iterator[tuple[K, list[Event] | WaiError]]:
        """Several requests decoded together, up to `slots` at once: each one's events (or why it
        failed) as it ends. Only a backend that `decodes_together` has it."""
        raise NotImplementedError(f"the {self.title} backend does not decode requests together")

    def describe(self) -> dict[str, object]:
        """Facts for `--debug` and `wai models` (base URL, GPU offload, ...); no secrets."""
        return {"backend": self.name}

    def close(self) -> None:
        """Free what the backend holds (a connection, a loaded model); it may be used again after."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""What every backend offers the rest of wai."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, Protocol

from wai.backends.request import Request
from wai.catalog.entries import ModelSpec
from wai.events import Event

if TYPE_CHECKING:
    from wai.windows.counters import TokenCounter

# The backends wai knows, by the name users pick them with (--backend, `/backend`).
BackendName = Literal["remote", "local", "openai"]
BackendMode = Literal["auto", BackendName]


class Backend(Protocol):
    """A way to run a model.

    `stream` yields Token events as text arrives, then Usage (when known) and exactly one
    Finish. It raises a WaiError subclass for an expected failure; IncompleteReply when the
    stream broke after output began. Closing the iterator (or KeyboardInterrupt inside it)
    stops the work promptly and frees the connection or the model.
    """

    name: BackendName

    def stream(self, request: Request) -> Iterator[Event]: ...

    def precision(self, request: Request) -> str | None:
        """The weights' precision as llama.cpp names it (q8_0, f16), None when unknown."""
        ...

    def describe(self) -> dict[str, object]:
        """Facts for `--debug` and `wai models` (base URL, GPU offload, ...); no secrets."""
        ...

    def warnings(self, request: Request) -> list[str]:
        """What the user should know before this request runs (stderr), [] when nothing."""
        ...

    def counter(self, spec: ModelSpec) -> TokenCounter:
        """How this backend counts a prompt for `spec`: the count the window plan is made with."""
        ...

    def close(self) -> None:
        """Free what the backend holds (a connection, a loaded model); it may be used again after."""
        ...

"""The local backend, llama.cpp on a GGUF file (the model in memory, stream.py, is built only when used)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wai.backends.base import Backend, BackendName, BackendSettings, K
from wai.errors import ConfigError, WaiError
from wai.settings import wai_home

if TYPE_CHECKING:
    from wai.backends.llama_cpp.batched import SlotDecoder
    from wai.backends.llama_cpp.stream import LlamaCppStream
    from wai.backends.request import Request
    from wai.catalog.entries import Catalog, ModelSpec
    from wai.events import Event
    from wai.sampling import Sampling
    from wai.schema import Schema
    from wai.settings import UserConfig
    from wai.tokens.counters import TokenCounter


class LlamaCpp(Backend):
    """Models with a `gguf` file, run in this process by llama.cpp."""

    title = "llama.cpp"
    tells_own_failure = True
    warm_modules = ("wai.backends.llama_cpp.stream", "llama_cpp")
    decodes_together = True

    def __init__(self, name: BackendName, settings: BackendSettings) -> None:
        super().__init__(name, settings)
        self._stream: LlamaCppStream | None = None

    def claim(
        self, name: str, entry: ModelSpec | None, catalog: Catalog, config: UserConfig
    ) -> ModelSpec | None:
        """A GGUF file's path (`-m path/to/file.gguf`), when the catalog has no model of that name."""
        from wai.catalog.resolve import looks_like_gguf_path

        if entry is not None or not looks_like_gguf_path(name):
            return None
        from wai.backends.llama_cpp.stream import spec_for_gguf

        return spec_for_gguf(Path(name).expanduser(), catalog)

    def serves(self, spec: ModelSpec) -> bool:
        return spec.gguf is not None

    def unavailable(self, spec: ModelSpec) -> str | None:
        path = spec.gguf_path()
        if path is None:
            return "no gguf in its catalog entry"
        if not path.is_file():
            return f"{path} is missing"
        return None

    def require(self, spec: ModelSpec) -> None:
        if spec.gguf is None and spec.provider is not None:
            raise ConfigError(
                f"{spec.id} has no local weights",
                hint=f"use --backend openai (or auto): it is a model of provider {spec.provider}",
            )
        if spec.gguf is None:
            raise ConfigError(
                f"{spec.id} has no local weights",
                hint=f'add gguf = "FILE.gguf" to its entry in {wai_home() / "models.toml"}',
            )

    def remedy(self, spec: ModelSpec) -> str:
        return f"put its weights at {spec.gguf_path()}"

    def counter(self, spec: ModelSpec, *, running: bool = False) -> TokenCounter:
        if running:  # the very model that answers: the file is loaded once for both jobs
            return self._model().counter_on_model(spec)
        from wai.tokens.counters import local_counter

        return local_counter(spec)

    def windows(self, spec: ModelSpec) -> ModelSpec:
        from wai.backends.llama_cpp.stream import windows_on_file

        return windows_on_file(spec)

    def warnings(self, spec: ModelSpec) -> list[str]:
        from wai.backends.llama_cpp.stream import file_warnings

        return file_warnings(spec, self.settings.local.gpu_layers)

    def unsupported(self, sampling: Sampling) -> str | None:
        from wai.backends.llama_cpp.sampler import unsupported

        return unsupported(sampling)

    def check_schema(self, spec: ModelSpec, schema: Schema, catalog: Catalog | None = None) -> None:
        from wai.schema.grammar import gbnf

        gbnf(schema.document, option=schema.option)  # what its grammar cannot hold is refused by name

    def open(self) -> None:
        self._model()

    def stream(
        self, request: Request, should_stop: Callable[[], bool] | None = None
    ) -> Generator[Event, None, None]:
        """The reply's events; `should_stop` (for callers off the main thread, where no signal
        arrives) is asked while the prompt is decoded."""
        return self._model().stream(request, should_stop)

    def stream_together(
        self, requests: Sequence[tuple[K, Request]], slots: int
    ) -> Iterator[tuple[K, list[Event] | WaiError]]:
        return self._model().stream_together(requests, slots)

    def slot_decoder(self, spec: ModelSpec, slots: int, per_slot: int, *, hint: str) -> SlotDecoder[K]:
        """The model loaded with room for `slots` sequences of `per_slot` positions, decoded
        together step by step (wai serve --parallel)."""
        return self._model().slot_decoder(spec, slots, per_slot, hint=hint)

    def precision(self, request: Request) -> str | None:
        return self._model().precision(request)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, **self._model().describe()}

    def gpu_layers(self) -> int:
        """Layers offloaded to the GPU: as asked, else every layer when llama.cpp can offload."""
        return self._model().gpu_layers()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def _model(self) -> LlamaCppStream:
        if self._stream is None:
            from wai.backends.llama_cpp.stream import LlamaCppStream

            local = self.settings.local
            self._stream = LlamaCppStream(
                gpu_layers=local.gpu_layers, threads=local.threads, debug=local.debug
            )
        return self._stream

"""The local backend: a GGUF model run by llama.cpp on this machine (on its GPU when built for one).

One loaded model is kept for the life of the process, so a REPL pays the load once; its
context (KV cache) is sized from the request's windows, prompt plus reply, never beyond the
model's trained context, and grown only when a later request needs more. Generation runs token
by token: it stops between two tokens when the consumer stops iterating (Ctrl-C, `close()`),
never produces more tokens than `max_tokens`, and holds back a character's bytes until the
character is complete.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from wai import settings
from wai.backends.llama_cpp.batched import common_prefix
from wai.backends.llama_cpp.request_input import grammar_of, prompt_tokens
from wai.backends.llama_cpp.sampler import sampler_for, unsupported
from wai.backends.llama_cpp.saved_states import StateKey, as_written, bound, limit, state_key
from wai.backends.request import Request
from wai.catalog.entries import Catalog, ModelSpec
from wai.errors import BackendError, ConfigError, UsageError, WaiError, WindowError
from wai.events import Event, Finish, FinishReason, Loaded, PromptRead, Token, Usage
from wai.llama import native
from wai.llama.gguf_info import GGUFInfo, read_gguf_info

if TYPE_CHECKING:
    from wai.backends.base import K
    from wai.backends.llama_cpp.batched import SlotDecoder
    from wai.tokens.counters import TokenCounter

# Contexts are allocated in steps of this many tokens (llama.cpp pads to 256 anyway).
_CONTEXT_STEP = 256
# Synonyms of llama.cpp's file type names that a catalog might use.
_PRECISION_SYNONYMS = {"fp16": "f16", "float16": "f16", "fp32": "f32", "float32": "f32", "int8": "q8_0"}


@dataclass(slots=True)
class _Loaded:
    """The model in memory and its context.

    `cached` are the tokens whose states the context holds, trusted only while `cached_valid`:
    a decode cut short (Ctrl-C) leaves them unknown, and the next request starts afresh.
    """

    path: Path
    stamp: tuple[int, int]
    model: native.NativeModel
    context: native.NativeContext | None = None
    cached: list[int] = field(default_factory=list)
    cached_valid: bool = False

    def close(self) -> None:
        if self.context is not None:
            self.context.close()
        self.model.close()


class LlamaCppStream:
    """Runs catalog models that have a `gguf` file, with llama-cpp-python: the model in memory,
    loaded once and kept while the same file is asked for."""

    def __init__(
        self, *, gpu_layers: int | None = None, threads: int | None = None, debug: bool = False
    ) -> None:
        self._gpu_layers = gpu_layers
        self._threads = threads
        self._debug = debug
        self._loaded: _Loaded | None = None
        self._unreported_load = 0.0  # a load done for counting, reported with the next reply
        self._build_checked = False
        native.LOG.debug = debug

    def stream(
        self, request: Request, should_stop: Callable[[], bool] | None = None
    ) -> Generator[Event, None, None]:
        """The reply's events. `should_stop` (for callers off the main thread, where no signal
        arrives) is asked while the prompt is decoded; once it says yes, DecodeStopped is raised."""
        native.LOG.debug = self._debug
        refusal = unsupported(request.sampling)
        if refusal is not None:
            raise UsageError(refusal)
        # Before anything is loaded: a schema the grammar cannot hold is refused by name.
        grammar = grammar_of(request)
        path = _existing_gguf(request.model)
        info = _header(path)
        started = time.perf_counter()
        loaded, fresh = self._model_for(path, info)
        prompt = prompt_tokens(loaded.model, request, template_of=path.name)
        # A file that declares no trained context (0) is taken at its catalog windows.
        n_ctx_train = loaded.model.n_ctx_train() or request.model.total_context
        if len(prompt) + request.max_tokens > n_ctx_train:
            raise WindowError(
                f"the prompt ({len(prompt)} tokens) and the reply (up to {request.max_tokens}) "
                f"exceed {path.name}'s trained context of {n_ctx_train} tokens",
                hint="shorten the prompt or lower --max-tokens",
            )
        context, resized = self._context_for(loaded, len(prompt) + request.max_tokens, n_ctx_train)
        earlier, self._unreported_load = self._unreported_load, 0.0
        if fresh or resized or earlier:
            yield Loaded(earlier + (time.perf_counter() - started if fresh or resized else 0.0))
        saved = (
            state_key(path, loaded.stamp, native.version(), request.affinity)
            if request.affinity is not None
            else None
        )
        if saved is not None:
            limit()  # a bound that cannot be read is said before the turn, not after its reply
        yield from self._generate(loaded, context, prompt, request, should_stop, grammar, saved)

    def stream_together(
        self, requests: Sequence[tuple[K, Request]], slots: int
    ) -> Iterator[tuple[K, list[Event] | WaiError]]:
        """Requests of one model decoded together, `slots` sequences at a time (batched.py): each
        one's events, or why it failed, as it ends."""
        from wai.backends.llama_cpp.batched import decode_together, slot_size

        if not requests:
            return
        first = requests[0][1]
        path = _existing_gguf(first.model)
        loaded, _ = self._model_for(path, _header(path))
        n_ctx_train = loaded.model.n_ctx_train() or first.model.total_context
        per_slot = slot_size([request for _, request in requests], n_ctx_train)
        count = max(1, min(slots, len(requests)))
        decoder: SlotDecoder[K] = self.slot_decoder(first.model, count, per_slot, hint="lower -j")
        try:
            yield from decode_together(decoder, requests)
        finally:
            decoder.close()

    def slot_decoder(self, spec: ModelSpec, slots: int, per_slot: int, *, hint: str) -> SlotDecoder[K]:
        """The model of `spec` loaded (once) with a context of `slots` sequences of `per_slot`
        positions each, for requests decoded together (batched.py)."""
        from wai.backends.llama_cpp.batched import SlotDecoder

        native.LOG.debug = self._debug
        path = _existing_gguf(spec)
        loaded, _ = self._model_for(path, _header(path))
        threads, threads_batch = self.threads()
        try:
            context = native.NativeContext(
                loaded.model,
                n_ctx=per_slot * slots,
                threads=threads,
                threads_batch=threads_batch,
                sequences=slots,
            )
        except native.LoadError as exc:
            raise BackendError(
                f"not enough memory for {slots} sequences of {per_slot} tokens on {path.name} "
                f"({exc.failure.last})",
                hint=hint,
            ) from None
        return SlotDecoder(loaded.model, context, slots=slots, per_slot=per_slot)

    def counter_on_model(self, spec: ModelSpec) -> TokenCounter:
        """An exact counter on the model this backend runs, loading it once for both jobs."""
        from wai.tokens.counters import counter_on_loaded

        path = _existing_gguf(spec)
        started = time.perf_counter()
        loaded, fresh = self._model_for(path, _header(path))
        if fresh:
            self._unreported_load += time.perf_counter() - started
        return counter_on_loaded(loaded.model, f"{path.name} (its own vocabulary)")

    def precision(self, request: Request) -> str | None:
        """The file type from the GGUF's metadata (f16, q8_0, ...); None when the file is unreadable."""
        info = _info_or_none(request.model)
        return info.file_type if info else None

    def describe(self) -> dict[str, object]:
        facts: dict[str, object] = {"llama_cpp_python": native.version()}
        try:
            supported = native.supports_gpu_offload()
        except ConfigError as exc:
            facts["error"] = str(exc)
            return facts
        layers = self.gpu_layers()
        threads, threads_batch = self.threads()
        facts.update(
            gpu_offload_supported=supported,
            gpu_layers="all" if layers < 0 else layers,
            gpu_offload_active=supported and layers != 0,
            threads=threads,
            threads_batch=threads_batch,
        )
        if self._loaded is not None:
            facts["model_path"] = str(self._loaded.path)
            facts["layers"] = self._loaded.model.n_layer()
            if self._loaded.context is not None:
                facts["n_ctx"] = self._loaded.context.n_ctx
            if self._loaded.model.offload_report:
                facts["offload"] = self._loaded.model.offload_report
        return facts

    # Settings

    def gpu_layers(self) -> int:
        """Layers to offload: as asked, else every layer (-1) when llama.cpp has GPU offload, else 0."""
        if self._gpu_layers is not None:
            return self._gpu_layers
        return -1 if native.supports_gpu_offload() else 0

    def threads(self) -> tuple[int, int]:
        """Threads for generation and for prompt processing."""
        if self._threads:
            return self._threads, self._threads
        return native.default_threads()

    def close(self) -> None:
        """Frees the loaded model now (it is freed at exit otherwise)."""
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    # Loading

    def _model_for(self, path: Path, info: GGUFInfo) -> tuple[_Loaded, bool]:
        stat = path.stat()
        stamp = (stat.st_size, stat.st_mtime_ns)
        current = self._loaded
        if current is not None and current.path == path.resolve() and current.stamp == stamp:
            return current, False
        self.close()  # one model at a time: two 7B models rarely fit in memory together
        if not self._build_checked:
            from wai.catalog.builtin import builtin_dir, installed_check_models
            from wai.llama.check import require_working_build

            require_working_build(settings.wai_home(), installed_check_models(builtin_dir()))
            self._build_checked = True
        layers = self.gpu_layers()
        try:
            model = native.NativeModel.load(path, gpu_layers=layers)
        except native.LoadError as exc:
            raise _load_error(path, info, exc.failure, layers) from None
        self._loaded = _Loaded(path=path.resolve(), stamp=stamp, model=model)
        return self._loaded, True

    def _context_for(
        self, loaded: _Loaded, needed: int, n_ctx_train: int
    ) -> tuple[native.NativeContext, bool]:
        """A context of at least `needed` tokens: the current one, or a larger one (doubling)."""
        current = loaded.context
        if current is not None and current.n_ctx >= needed:
            return current, False
        size = -(-needed // _CONTEXT_STEP) * _CONTEXT_STEP
        if current is not None:
            size = max(size, 2 * current.n_ctx)
        size = min(size, n_ctx_train)
        if current is not None:
            current.close()
            loaded.context = None
            loaded.cached_valid = False
        threads, threads_batch = self.threads()
        try:
            context = native.NativeContext(
                loaded.model, n_ctx=size, threads=threads, threads_batch=threads_batch
            )
        except native.LoadError as exc:
            hint = "shorten the prompt or lower --max-tokens"
            if self.gpu_layers() != 0:
                hint += ", or offload fewer layers (--gpu-layers)"
            raise BackendError(
                f"not enough memory for a {size}-token context on {loaded.path.name} ({exc.failure.last})",
                hint=hint,
            ) from None
        if context.n_ctx < needed:
            context.close()
            raise BackendError(f"llama.cpp made a {context.n_ctx}-token context; {needed} tokens were needed")
        loaded.context = context
        return context, True

    # Generating

    def _generate(
        self,
        loaded: _Loaded,
        context: native.NativeContext,
        prompt: list[int],
        request: Request,
        should_stop: Callable[[], bool] | None = None,
        grammar: str | None = None,
        saved: StateKey | None = None,
    ) -> Iterator[Event]:
        model = loaded.model
        reason: FinishReason = "stop"
        produced = 0
        if request.max_tokens <= 0:
            yield Usage(len(prompt), 0, exact=True)
            yield Finish("length")
            return
        sampler = sampler_for(request.sampling, request.max_tokens, model, grammar)
        try:
            yield from self._feed_prompt(loaded, context, prompt, should_stop, saved)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            strip_space = model.is_spm()  # llama.h: drop the word-start space of the first piece
            while True:
                token = sampler.sample(context)
                if model.is_eog(token):
                    break
                produced += 1
                piece = model.piece(token)
                if strip_space and piece:
                    strip_space = False
                    if piece.startswith(b" "):
                        piece = piece[1:]
                text = decoder.decode(piece)
                if text:
                    yield Token(text)
                if produced >= request.max_tokens:
                    # An incomplete character at the cap is dropped, never shown as garbage.
                    reason = "length"
                    break
                loaded.cached_valid = False
                context.decode_one(token)
                loaded.cached.append(token)
                loaded.cached_valid = True
        finally:
            sampler.close()
        if saved is not None and loaded.cached_valid:
            self._save(context, saved, loaded.cached)
        yield Usage(prompt_tokens=len(prompt), completion_tokens=produced, exact=True)
        yield Finish(reason)

    def _feed_prompt(
        self,
        loaded: _Loaded,
        context: native.NativeContext,
        prompt: list[int],
        should_stop: Callable[[], bool] | None = None,
        saved: StateKey | None = None,
    ) -> Iterator[PromptRead]:
        """Decode the prompt, reusing the context's states for the prefix it shares with the last
        one (or, in a new process, with the conversation's saved state); how far it has got after
        each of llama.cpp's batches (a long prompt takes seconds)."""
        keep = common_prefix(loaded.cached, prompt) if loaded.cached_valid else 0
        if keep == 0 and saved is not None:
            keep = self._restore(loaded, context, saved, prompt)
        keep = min(keep, len(prompt) - 1)  # the last prompt token is decoded again for its logits
        if keep <= 0 or not context.truncate(keep):
            keep = 0
            context.clear()
        loaded.cached_valid = False
        yield PromptRead(keep, len(prompt))
        for start in range(keep, len(prompt), context.n_batch):
            end = min(start + context.n_batch, len(prompt))
            context.decode(prompt[start:end], should_stop)
            yield PromptRead(end, len(prompt))
        loaded.cached = list(prompt)
        loaded.cached_valid = True

    def _restore(
        self, loaded: _Loaded, context: native.NativeContext, saved: StateKey, prompt: list[int]
    ) -> int:
        """Load the conversation's saved state when there is one: how many of the prompt's first
        tokens it holds (0 when none: no file, a file that will not load, other tokens)."""
        path = saved.saved()
        if path is None:
            return 0
        if not as_written(path):  # llama.cpp trusts the file: a cut one aborts the process
            self._say(
                f"the saved state {path} did not load: it is not as it was written; the prompt is read whole"
            )
            return 0
        loaded.cached_valid = False
        tokens = context.load_state(path, context.n_ctx)
        if tokens is None:
            self._say(f"the saved state {path} did not load; the prompt is read whole")
            return 0
        loaded.cached, loaded.cached_valid = tokens, True
        keep = common_prefix(tokens, prompt)
        self._say(f"saved state {path.name}: {keep} of the prompt's {len(prompt)} tokens reused")
        return keep

    def _save(self, context: native.NativeContext, saved: StateKey, tokens: list[int]) -> None:
        """Keep the conversation's state for a later process; a failure costs only that."""
        temporary = saved.folder / f".{saved.name}.{os.getpid()}"
        try:
            saved.folder.mkdir(parents=True, exist_ok=True)
            if context.save_state(temporary, tokens):
                kept = saved.seal(temporary)
                os.replace(temporary, kept)
                for earlier in saved.others(kept):
                    earlier.unlink(missing_ok=True)
                bound(keep=kept)
        except OSError as exc:
            self._say(f"the state was not saved: {exc}")
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()

    def _say(self, line: str) -> None:
        if self._debug:
            import sys

            print(f"wai: debug: {line}", file=sys.stderr)


def normalize_precision(name: str) -> str:
    lowered = name.strip().lower()
    return _PRECISION_SYNONYMS.get(lowered, lowered)


# Files and their errors


def _existing_gguf(spec: ModelSpec) -> Path:
    path = spec.gguf_path()
    if path is None:
        raise ConfigError(
            f"'{spec.id}' has no local weights (its catalog entry names no gguf file)",
            hint='use --backend remote, or add gguf = "FILE.gguf" to its entry in $WAI_HOME/models.toml',
        )
    _check_is_file(path)
    return path


def _check_is_file(path: Path) -> None:
    if path.is_dir():
        raise ConfigError(f"the model path {path} is a folder", hint="name the .gguf file inside it")
    if not path.is_file():
        raise ConfigError(f"the model file {path} does not exist", hint=_missing_file_hint(path))


def _header(path: Path) -> GGUFInfo:
    try:
        return read_gguf_info(path)
    except OSError as exc:
        raise BackendError(f"cannot read the model file {path}: {exc.strerror or exc}") from None


def _missing_file_hint(path: Path) -> str:
    from wai.catalog.builtin import BUILTIN_FILES

    if path.name in BUILTIN_FILES:
        return "run `wai setup` to install the built-in model"
    folder = settings.models_dir()
    if path.parent == folder:
        return f"put the GGUF file in the models folder {folder} (WAI_MODELS_DIR sets another)"
    return f"check the path; bare file names are also looked up in the models folder {folder}"


def _info_or_none(spec: ModelSpec) -> GGUFInfo | None:
    path = spec.gguf_path()
    if path is None:
        return None
    try:
        return read_gguf_info(path)
    except (OSError, BackendError):
        return None


def _load_error(path: Path, info: GGUFInfo, failure: native.LoadFailure, layers: int) -> BackendError:
    arch = info.architecture or "unknown"
    llama_version = native.version() or "?"
    if failure.unknown_architecture:
        return BackendError(
            f"llama.cpp (llama-cpp-python {llama_version}) does not support the '{arch}' architecture "
            f"of {path}",
            hint="upgrade llama-cpp-python, or use a model of a supported architecture",
        )
    if failure.out_of_memory:
        size_gb = info.file_size / 1e9
        hint = "close other programs or use a smaller quantization"
        if layers != 0:
            hint = "offload fewer layers with --gpu-layers N (or 0), or use a smaller quantization"
        return BackendError(f"not enough memory to load {path} ({size_gb:.1f} GB): {failure.last}", hint=hint)
    return BackendError(f"llama.cpp could not load {path} (architecture '{arch}'): {failure.last}")


def file_warnings(spec: ModelSpec, gpu_layers: int | None) -> list[str]:
    """Disagreements between the catalog entry and its file, and a --gpu-layers this build cannot
    honour, for the app to print (stderr)."""
    info = _info_or_none(spec)
    if info is None:
        return []
    notes: list[str] = []
    if gpu_layers and not native.supports_gpu_offload():
        notes.append(
            f"--gpu-layers {gpu_layers} has no effect: this llama.cpp build cannot offload to a "
            "GPU (`make install-gpu` builds one that can)"
        )
    expected = normalize_precision(spec.precision) if spec.precision else None
    if expected and info.file_type and info.file_type != expected:
        notes.append(
            f"{info.path.name} holds {info.file_type} weights, but the catalog entry "
            f"'{spec.id}' says {expected}"
        )
    trained = info.context_length
    if trained and spec.total_context > trained:
        notes.append(
            f"'{spec.id}' allows {spec.total_context} tokens of context, but {info.path.name} "
            f"was trained on {trained}: prompt and reply together must stay within {trained}"
        )
    return notes


def windows_on_file(spec: ModelSpec) -> ModelSpec:
    """`spec`'s windows within its file's trained context: the smaller context is the one that counts.

    An entry may allow more than the file was trained on (the Llama-2 entry's 2048 tokens on a file
    trained on 1024): prompt and reply then share the file's context, so the default max_tokens is
    what it leaves after the prompt. Unchanged when the file is missing, unreadable or says nothing.
    """
    info = _info_or_none(spec)
    trained = info.context_length if info else 0
    if not trained or trained >= spec.total_context:
        return spec
    return replace(spec, total_context=trained, context_window=min(spec.context_window, trained))


# `-m path/to/file.gguf`


def spec_for_gguf(path: Path, catalog: Catalog) -> ModelSpec:
    """The model spec for a GGUF file named directly on the command line.

    The catalog entry whose `gguf` is this file wins. Otherwise the windows come from the
    file's trained context T (`<arch>.context_length`; 2048 when the file does not say):
    total_context = T, max_output = min(T // 4, 4096), context_window = T - max_output.
    A 4096-token model thus takes 3072 prompt tokens and 1024 reply tokens; an 8192-token
    one 6144 and 2048 (the built-in model's catalog windows).
    """
    path = path.expanduser()
    if not path.is_absolute() and not path.exists() and settings.model_file(path).is_file():
        path = settings.model_file(path)  # a bare file name: the models folder, as in the catalog
    _check_is_file(path)
    known = catalog.by_gguf(path)
    if known is not None:
        return known
    info = _header(path)
    trained = info.context_length or 2048
    max_output = min(trained // 4, 4096)
    return ModelSpec(
        # The whole path: the transcript keeps the id, and `-c` from another folder must find the file.
        id=str(path.resolve()),
        context_window=trained - max_output,
        max_output=max_output,
        total_context=trained,
        remote=False,
        gguf=str(path.resolve()),
        precision=info.file_type,
        description=info.name or path.stem,
        source=str(path),
    )

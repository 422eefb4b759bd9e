"""A thin, typed layer over llama-cpp-python's bindings of the llama.cpp C API.

The C API (llama.h) rather than the `Llama` class: it lets a context be resized without
reloading the weights, generation stop between any two tokens, and every token be counted.
llama.cpp's own log lines are captured here: shown only in debug mode, kept to explain a failure.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from wai.errors import BackendError, ConfigError
from wai.llama.utf8 import Utf8Guard
from wai.notices import echo_stderr
from wai.terminal import stop_signals

INSTALL_HINT = "install it with `pip install 'wai[local]'` (or `make install` in a source checkout)"

# enum ggml_log_level
_LOG_WARN, _LOG_ERROR, _LOG_CONT = 3, 4, 5
# Bigger than any real token's text; a longer one is retried with the size llama.cpp asks for.
_PIECE_BUFFER = 128
_ALL_LAYERS = 0x7FFFFFFF
_DECODE_ABORTED = 2  # llama_decode: the abort callback stopped it


class DecodeStopped(Exception):
    """The caller's should_stop ended a decode early; the context keeps none of its positions."""


def lib() -> ModuleType:
    """The llama_cpp module, its logging already routed through `LOG`; ConfigError when missing."""
    global _lib
    if _lib is not None:
        return _lib
    with _init_lock:
        if _lib is None:
            try:
                import llama_cpp
            except ImportError as exc:
                raise ConfigError(
                    f"the local backend needs llama-cpp-python, which is not installed ({exc})",
                    hint=INSTALL_HINT,
                ) from None
            except OSError as exc:  # the package is there but its shared library does not load
                raise ConfigError(
                    f"llama-cpp-python is installed but its llama.cpp library does not load: {exc}",
                    hint="reinstall it: `make install` (or `make install-gpu` for CUDA)",
                ) from None
            LOG.install(llama_cpp)
            llama_cpp.llama_backend_init()
            _lib = llama_cpp
    return _lib


_lib: ModuleType | None = None
_init_lock = threading.Lock()


def version() -> str | None:
    """llama-cpp-python's version, None when it is not installed (without loading llama.cpp)."""
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return None


class _LlamaLog:
    """Receives every llama.cpp log line: echoes it in debug mode, hands it to open captures."""

    def __init__(self) -> None:
        self.debug = False
        self._level = 0
        self._captures: list[list[tuple[int, str]]] = []
        self._callback: Any = None  # the ctypes callback must outlive every llama.cpp call

    def install(self, llama_cpp: ModuleType) -> None:
        def receive(level: int, text: bytes | None, _user_data: object) -> None:
            try:
                line = (text or b"").decode("utf-8", errors="replace")
                if level != _LOG_CONT:
                    self._level = level
                for lines in self._captures:
                    lines.append((self._level, line))
                if self.debug:  # the log quotes the file's metadata: text only
                    echo_stderr(line)
            except Exception:  # an exception must never cross back into C
                pass

        self._callback = llama_cpp.llama_log_callback(receive)
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    @contextmanager
    def capture(self) -> Iterator[list[tuple[int, str]]]:
        """Collects the lines logged inside the block, each with its level."""
        lines: list[tuple[int, str]] = []
        self._captures.append(lines)
        try:
            yield lines
        finally:
            # By identity: two empty captures are equal, and nested ones must each remove their own.
            self._captures = [kept for kept in self._captures if kept is not lines]


LOG = _LlamaLog()


def errors_in(lines: Sequence[tuple[int, str]]) -> list[str]:
    """The warning and error lines among captured log lines, joined across continuations."""
    joined: list[tuple[int, str]] = []
    for level, text in lines:
        if joined and not joined[-1][1].endswith("\n"):
            joined[-1] = (joined[-1][0], joined[-1][1] + text)
        else:
            joined.append((level, text))
    return [text.strip() for level, text in joined if level >= _LOG_WARN and text.strip()]


def supports_gpu_offload() -> bool:
    return bool(lib().llama_supports_gpu_offload())


def default_threads() -> tuple[int, int]:
    """Threads for generation and for prompt processing, as llama-cpp-python chooses them."""
    cpus = os.cpu_count() or 1
    return max(cpus // 2, 1), cpus


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """Why llama.cpp refused a file, from its log."""

    lines: list[str]

    @property
    def out_of_memory(self) -> bool:
        text = " ".join(self.lines).lower()
        return any(word in text for word in ("alloc", "out of memory", "memory"))

    @property
    def unknown_architecture(self) -> bool:
        return any("unknown model architecture" in line for line in self.lines)

    @property
    def last(self) -> str:
        return self.lines[-1] if self.lines else "no reason given"


class NativeModel:
    """Loaded weights and vocabulary (or a vocabulary only)."""

    def __init__(self, model: Any, *, owner: object | None = None) -> None:
        self._lib = lib()
        self.ptr = model
        self.vocab = self._lib.llama_model_get_vocab(model)
        self._owner = owner  # a borrowed model stays alive as long as whoever owns it
        self._owned = owner is None
        self.offload_report: str | None = None
        self.cache: dict[str, object] = {}  # facts derived from the model, computed once

    @classmethod
    def load(cls, path: Path, *, gpu_layers: int, vocab_only: bool = False) -> NativeModel:
        """Loads `path`; raises LoadError with llama.cpp's own reason when it refuses."""
        llama_cpp = lib()
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = _ALL_LAYERS if gpu_layers < 0 else gpu_layers
        params.vocab_only = vocab_only
        # Loading calls back into Python (the log, the progress): a Ctrl-C raised inside a callback
        # would be lost, so it is noted there, stops the load, and is raised once llama.cpp returns.
        with LOG.capture() as lines, stop_signals.deferred() as stopping:
            progress = llama_cpp.llama_progress_callback(lambda _done, _data: not stopping())
            params.progress_callback = progress
            model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if not model:
            raise LoadError(LoadFailure(errors_in(lines)))
        loaded = cls(model)
        loaded.offload_report = next(
            (text.strip() for _, text in lines if "offloaded" in text and "layers" in text), None
        )
        return loaded

    @classmethod
    def borrow(cls, llm: Any) -> NativeModel:
        """The model inside a llama_cpp.Llama (vocab-only or not), without taking ownership."""
        return cls(llm.model, owner=llm)

    def close(self) -> None:
        if self._owned and self.ptr:
            self._lib.llama_model_free(self.ptr)
        self.ptr = None

    # Facts about the model and its vocabulary

    def n_ctx_train(self) -> int:
        return int(self._lib.llama_model_n_ctx_train(self.ptr))

    def n_layer(self) -> int:
        return int(self._lib.llama_model_n_layer(self.ptr))

    def meta(self, key: str) -> str | None:
        size = 256
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = self._lib.llama_model_meta_val_str(self.ptr, key.encode("utf-8"), buffer, size)
            if n < 0:
                return None
            if n < size:
                return buffer.value.decode("utf-8", errors="replace")
            size = n + 1

    def chat_template(self) -> str | None:
        raw = self._lib.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def n_vocab(self) -> int:
        return int(self._lib.llama_vocab_n_tokens(self.vocab))

    def is_spm(self) -> bool:
        return int(self._lib.llama_vocab_type(self.vocab)) == int(self._lib.LLAMA_VOCAB_TYPE_SPM)

    def bos(self) -> int:
        return int(self._lib.llama_vocab_bos(self.vocab))

    def eos(self) -> int:
        return int(self._lib.llama_vocab_eos(self.vocab))

    def adds_bos(self) -> bool:
        return bool(self._lib.llama_vocab_get_add_bos(self.vocab))

    def token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self._lib.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def token_attr(self, token: int) -> int:
        """llama_token_attr flags of `token` (control, user-defined, strips whitespace, ...)."""
        return int(self._lib.llama_vocab_get_attr(self.vocab, token))

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.vocab, token))

    # Text and tokens

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        raw = text.encode("utf-8")
        capacity = len(raw) + 8
        while True:
            tokens = (self._lib.llama_token * capacity)()
            n = self._lib.llama_tokenize(
                self.vocab, raw, len(raw), tokens, capacity, add_special, parse_special
            )
            if n >= 0:
                return list(tokens[:n])
            if -n <= capacity:  # cannot happen unless llama.cpp overflows int32
                raise BackendError(f"llama.cpp could not tokenize a text of {len(raw)} bytes")
            capacity = -n

    def piece(self, token: int) -> bytes:
        """The bytes of one token as they appear in text (control tokens give none)."""
        size = _PIECE_BUFFER
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = self._lib.llama_token_to_piece(self.vocab, token, buffer, size, 0, False)
            if n >= 0:
                return buffer.raw[:n]
            size = -n


class LoadError(BackendError):
    def __init__(self, failure: LoadFailure) -> None:
        super().__init__(failure.last)
        self.failure = failure


class NativeContext:
    """One inference context (the KV cache) on a model: decodes tokens, keeps their states."""

    def __init__(
        self, model: NativeModel, *, n_ctx: int, threads: int, threads_batch: int, sequences: int = 1
    ) -> None:
        """`sequences`: how many sequences it holds at once (batched decoding)."""
        llama_cpp = self._lib = lib()
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_seq_max = sequences
        # A KV buffer per sequence (n_ctx / sequences positions each): with one buffer for all,
        # flash attention's sums for one sequence changed with the others beside it in a batch
        # (greedy replies of SmolLM2 differed from a lone decode's for most records); with one
        # each, a sequence decoded beside others gives exactly what it gives alone. A batch then
        # splits into equal shares of each sequence's tokens: the caller gives a prompt a batch
        # of its own, and each step one token of every sequence.
        params.kv_unified = sequences == 1
        params.n_batch = params.n_ubatch = self.n_batch = min(512, n_ctx)
        params.n_threads = threads
        params.n_threads_batch = threads_batch
        params.no_perf = True
        with LOG.capture() as lines, stop_signals.deferred():  # see NativeModel.load
            ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise LoadError(LoadFailure(errors_in(lines)))
        self.ptr = ctx
        self.n_ctx = int(llama_cpp.llama_n_ctx(ctx))
        self._single = (llama_cpp.llama_token * 1)()

    def close(self) -> None:
        if self.ptr:
            self._lib.llama_free(self.ptr)
        self.ptr = None

    def clear(self) -> None:
        self._lib.llama_memory_clear(self._lib.llama_get_memory(self.ptr), True)

    def truncate(self, keep: int) -> bool:
        """Forget every position from `keep` on; False when this model's memory cannot do that."""
        return bool(self._lib.llama_memory_seq_rm(self._lib.llama_get_memory(self.ptr), -1, keep, -1))

    def save_state(self, path: Path, tokens: Sequence[int]) -> bool:
        """Save the states of sequence 0 and the tokens they are of to `path`; False on failure."""
        array = (self._lib.llama_token * len(tokens))(*tokens)
        written = self._lib.llama_state_seq_save_file(self.ptr, str(path).encode(), 0, array, len(tokens))
        return bool(written)

    def load_state(self, path: Path, capacity: int) -> list[int] | None:
        """Load sequence 0's states from `path` (made by save_state); the tokens they are of, or
        None when the file cannot be loaded (then the context holds nothing)."""
        array = (self._lib.llama_token * capacity)()
        count = ctypes.c_size_t(0)
        read = self._lib.llama_state_seq_load_file(
            self.ptr, str(path).encode(), 0, array, capacity, ctypes.byref(count)
        )
        if not read or count.value > capacity:
            self.clear()
            return None
        return list(array[: count.value])

    def decode(self, tokens: Sequence[int], should_stop: Callable[[], bool] | None = None) -> None:
        """Feed tokens (in batches of n_batch); the last one's logits are then ready to sample.

        Ctrl-C (or SIGTERM, SIGHUP) stops it inside a batch: llama.cpp asks the abort callback
        between two steps of its compute graph, so a long prompt stops within milliseconds rather
        than at the end of a 512-token batch. It then raises KeyboardInterrupt; the positions of the
        batch it stopped in are not kept. Off the main thread no signal arrives: there the caller's
        `should_stop` (a request cancelled, say) stops it the same way, raising DecodeStopped.
        """
        with stop_signals.deferred() as signalled:

            def stopping() -> bool:
                return signalled() or (should_stop is not None and should_stop())

            def abort(_data: object) -> bool:
                return stopping()

            callback = self._lib.ggml_abort_callback(abort)
            self._lib.llama_set_abort_callback(self.ptr, callback, None)
            try:
                for start in range(0, len(tokens), self.n_batch):
                    if stopping():
                        break
                    chunk = tokens[start : start + self.n_batch]
                    array = (self._lib.llama_token * len(chunk))(*chunk)
                    status = self._lib.llama_decode(
                        self.ptr, self._lib.llama_batch_get_one(array, len(chunk))
                    )
                    if status == _DECODE_ABORTED and stopping():
                        break
                    self._check(status)
            finally:
                # Generation decodes one token at a time and stops between tokens: no callback
                # costs it a Python call per graph step.
                self._lib.llama_set_abort_callback(self.ptr, self._lib.ggml_abort_callback(), None)
            if not signalled() and should_stop is not None and should_stop():
                raise DecodeStopped("decoding the prompt was stopped")

    def decode_batch(self, batch: NativeBatch) -> None:
        """Decode a batch of tokens of several sequences at once; the logits asked for are ready
        to sample, each at its index in the batch."""
        self._check(self._lib.llama_decode(self.ptr, batch.raw))

    def forget(self, sequence: int) -> None:
        """Drop every position of one sequence, so its slot can take another."""
        self._lib.llama_memory_seq_rm(self._lib.llama_get_memory(self.ptr), sequence, -1, -1)

    def forget_from(self, sequence: int, position: int) -> bool:
        """Drop one sequence's positions from `position` on, keeping those before; False when this
        model's memory cannot (then nothing is dropped)."""
        return bool(
            self._lib.llama_memory_seq_rm(self._lib.llama_get_memory(self.ptr), sequence, position, -1)
        )

    def decode_one(self, token: int) -> None:
        self._single[0] = token
        self._check(self._lib.llama_decode(self.ptr, self._lib.llama_batch_get_one(self._single, 1)))

    def _check(self, status: int) -> None:
        if status == 0:
            return
        if status == 1:
            raise BackendError("llama.cpp found no room in its context for the next token")
        raise BackendError(f"llama.cpp failed to evaluate the model (llama_decode returned {status})")


class NativeBatch:
    """A llama_batch: up to `size` tokens, each of one sequence at one position, some with their
    logits asked for (the last of a prompt, every generated token)."""

    def __init__(self, size: int, sequences: int) -> None:
        self._lib = lib()
        self.size = size
        self.raw = self._lib.llama_batch_init(size, 0, sequences)
        self.count = 0

    def clear(self) -> None:
        self.count = self.raw.n_tokens = 0

    def add(self, token: int, position: int, sequence: int, *, logits: bool) -> int:
        """Add one token; its index in the batch (where its logits are, when asked for)."""
        index, raw = self.count, self.raw
        if index >= self.size:
            raise ValueError("the batch is full")
        raw.token[index] = token
        raw.pos[index] = position
        raw.n_seq_id[index] = 1
        raw.seq_id[index][0] = sequence
        raw.logits[index] = logits
        self.count = raw.n_tokens = index + 1
        return index

    def close(self) -> None:
        if self.size:
            self._lib.llama_batch_free(self.raw)
        self.size = 0


@dataclass(frozen=True, slots=True)
class Penalties:
    """llama.cpp's penalties sampler: `repeat` divides the logits of tokens already generated
    (1 is off, and it must stay above 0), `frequency` and `presence` subtract per occurrence and
    once (0 is off); over the last `last_n` generated tokens."""

    last_n: int
    repeat: float = 1.0
    frequency: float = 0.0
    presence: float = 0.0

    @property
    def active(self) -> bool:
        return self.last_n != 0 and (self.repeat != 1.0 or self.frequency != 0.0 or self.presence != 0.0)


class GrammarError(BackendError):
    """llama.cpp refused a GBNF grammar (its log says why)."""


class Sampler:
    """A llama.cpp sampler chain; temperature 0 means greedy (after the penalties, if any).

    `grammar` (GBNF, with a `root` rule): llama.cpp's grammar sampler leaves only the tokens that
    keep the text within the grammar; the end of generation is then possible only where the
    grammar is complete. It is applied as llama.cpp's own common sampler applies it: the chain
    picks a token from all of them, the grammar checks that one token, and only when it refuses
    does the grammar filter the whole vocabulary and the chain pick again. Checking one token
    instead of filtering tens of thousands is most of the speed of generation under a grammar.
    """

    def __init__(
        self,
        *,
        temperature: float,
        top_p: float,
        top_k: int,
        min_p: float,
        seed: int | None,
        penalties: Penalties | None = None,
        n_vocab: int = 0,
        grammar: str | None = None,
        model: NativeModel | None = None,
    ) -> None:
        llama_cpp = self._lib = lib()
        self.ptr = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self.grammar: Any = None
        add = llama_cpp.llama_sampler_chain_add
        if penalties is not None and penalties.active:
            # First in the chain, as llama.cpp's own samplers order it: it changes logits, and what
            # follows picks from the changed ones.
            add(
                self.ptr,
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab, penalties.last_n, penalties.repeat, penalties.frequency, penalties.presence
                ),
            )
        if grammar is not None:
            if model is None:
                raise ValueError("a grammar needs the model whose vocabulary it constrains")
            with LOG.capture() as lines:
                constrained = llama_cpp.llama_sampler_init_grammar(
                    model.vocab, grammar.encode("utf-8"), b"root"
                )
            if not constrained:
                self.close()
                # Its log line goes on to quote the whole grammar: the first line says why.
                reason = next((line.splitlines()[0] for line in errors_in(lines)), "no reason given")
                raise GrammarError(f"llama.cpp refused the grammar made from the schema: {reason}")
            self.grammar = constrained
            self._candidates = _Candidates(llama_cpp, model.n_vocab())
            self._utf8 = _utf8_guard(model)
        if temperature <= 0:
            add(self.ptr, llama_cpp.llama_sampler_init_greedy())
            return
        add(self.ptr, llama_cpp.llama_sampler_init_top_k(top_k))
        add(self.ptr, llama_cpp.llama_sampler_init_top_p(top_p, 1))
        add(self.ptr, llama_cpp.llama_sampler_init_min_p(min_p, 1))
        add(self.ptr, llama_cpp.llama_sampler_init_temp(temperature))
        add(
            self.ptr,
            llama_cpp.llama_sampler_init_dist(
                llama_cpp.LLAMA_DEFAULT_SEED if seed is None else seed % 0xFFFFFFFF
            ),
        )

    def sample(self, ctx: NativeContext, index: int = -1) -> int:
        """The next token after the last decoded one, or after the token at `index` of a batch
        (llama.cpp also records it as accepted)."""
        if self.grammar is None:
            return int(self._lib.llama_sampler_sample(self.ptr, ctx.ptr, index))
        llama_cpp, candidates, utf8 = self._lib, self._candidates, self._utf8
        logits = llama_cpp.llama_get_logits_ith(ctx.ptr, index)
        token = candidates.pick(self.ptr, logits)
        if token is None or not utf8.allows(token) or not candidates.allowed(self.grammar, token):
            token = candidates.pick(self.ptr, logits, first=self.grammar, only=utf8.mask())
            if token is None:
                raise BackendError("the model's vocabulary cannot continue the JSON the schema asks for")
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.ptr, token)
        utf8.advance(token)
        return token

    def close(self) -> None:
        if self.ptr:
            self._lib.llama_sampler_free(self.ptr)
        self.ptr = None
        if self.grammar:
            self._lib.llama_sampler_free(self.grammar)
        self.grammar = None


def _utf8_guard(model: NativeModel) -> Utf8Guard:
    """A fresh guard over the model's token pieces, which the model keeps (with the guard's
    verdicts) for every later reply."""
    pieces = model.cache.get("pieces")
    if pieces is None:
        pieces = model.cache["pieces"] = [model.piece(token) for token in range(model.n_vocab())]
    masks = model.cache.setdefault("utf8 masks", {})
    return Utf8Guard(pieces, masks)  # type: ignore[arg-type]


class _Candidates:
    """Every token with its logit, as llama.cpp's samplers take them, refilled for each pick
    (numpy, which llama-cpp-python depends on, fills the vocabulary's worth in microseconds)."""

    def __init__(self, llama_cpp: ModuleType, n_vocab: int) -> None:
        import numpy as np

        self._lib = llama_cpp
        self._np = np
        self.n_vocab = n_vocab
        dtype = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
        self.data = np.zeros(n_vocab, dtype=dtype)
        self.ids = np.arange(n_vocab, dtype=np.intc)
        pointer = ctypes.POINTER(llama_cpp.llama_token_data)
        self.array = llama_cpp.llama_token_data_array(self.data.ctypes.data_as(pointer), n_vocab, -1, False)
        self.one = np.zeros(1, dtype=dtype)
        self.one_array = llama_cpp.llama_token_data_array(self.one.ctypes.data_as(pointer), 1, -1, False)

    def pick(self, chain: Any, logits: Any, *, first: Any = None, only: Any = None) -> int | None:
        """The token `chain` selects from the logits (after `first` has filtered them, among the
        tokens `only` allows); None when no token is possible."""
        # Samplers sort and shorten the array in place: it is laid out afresh each time.
        self.data["id"] = self.ids
        self.data["logit"] = self._np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        self.data["p"] = 0.0
        if only is not None:
            self.data["logit"][~only] = -self._np.inf
        self.array.size, self.array.selected, self.array.sorted = self.n_vocab, -1, False
        if first is not None:
            self._lib.llama_sampler_apply(first, ctypes.byref(self.array))
        self._lib.llama_sampler_apply(chain, ctypes.byref(self.array))
        if not 0 <= self.array.selected < self.array.size:
            return None
        chosen = self.data[self.array.selected]
        if chosen["logit"] == -self._np.inf:
            return None
        return int(chosen["id"])

    def allowed(self, grammar: Any, token: int) -> bool:
        """Whether the grammar lets `token` come next."""
        self.one[0] = (token, 1.0, 0.0)
        self.one_array.size, self.one_array.selected, self.one_array.sorted = 1, -1, False
        self._lib.llama_sampler_apply(grammar, ctypes.byref(self.one_array))
        return bool(self.one[0]["logit"] != -self._np.inf)

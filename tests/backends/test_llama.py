"""The local backend on real llama.cpp, with tiny deterministic GGUF models built by the tests."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tiny_gguf import SPLIT_SCRIPT as SCRIPT
from tests.support.tiny_gguf import TinyModel, build_tiny_llama
from wai.backends.base import BackendSettings, LocalOptions
from wai.backends.llama_cpp.backend import LlamaCpp
from wai.backends.llama_cpp.stream import LlamaCppStream, spec_for_gguf
from wai.backends.request import Request
from wai.catalog.entries import Catalog, ModelSpec
from wai.conversation import Message
from wai.errors import BackendError, ConfigError, WaiError, WindowError
from wai.events import Event, Finish, Loaded, Token, Usage
from wai.sampling import Sampling

pytest.importorskip("llama_cpp")

GREEDY = Sampling(temperature=0)


@pytest.fixture(scope="session")
def looping(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Writes "Hi 🎉!" over and over: only the cap stops it."""
    path = tmp_path_factory.mktemp("tiny-loop") / "loop.q8_0.gguf"
    return build_tiny_llama(path, ftype="q8_0", script="Hi 🎉!", loop=True, context_length=512)


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, LlamaCppStream]]:
    """One backend per model file, kept for the module: models load once, as in a REPL."""
    cache: dict[str, LlamaCppStream] = {}
    yield cache
    for backend in cache.values():
        backend.close()


def backend_for(backends: dict[str, LlamaCppStream], model: TinyModel) -> LlamaCppStream:
    return backends.setdefault(str(model.path), LlamaCppStream(threads=1))


def spec(model: TinyModel | Path, **overrides: object) -> ModelSpec:
    path = model.path if isinstance(model, TinyModel) else model
    values: dict[str, object] = {
        "id": "tiny",
        "context_window": 384,
        "max_output": 128,
        "total_context": 512,
        "remote": False,
        "gguf": str(path),
    }
    values.update(overrides)
    return ModelSpec(**values)  # type: ignore[arg-type]


def request(
    model: TinyModel | Path, text: str = "where is new york?", *, max_tokens: int = 64, **kw: object
) -> Request:
    return Request(
        model=spec(model, **kw),
        messages=(Message("user", text),),
        max_tokens=max_tokens,
        sampling=GREEDY,
    )


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Token))


def only(events: list[Event], kind: type[Usage] | type[Finish]) -> Usage | Finish:
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, events
    return found[0]


# What the user reads


@pytest.mark.parametrize("ftype", ["f16", "q8_0"])
def test_writes_the_exact_text_in_both_precisions(
    tiny_models: dict[str, TinyModel], backends: dict[str, LlamaCppStream], ftype: str
) -> None:
    model = tiny_models[ftype]
    events = list(backend_for(backends, model).stream(request(model)))
    assert text_of(events) == SCRIPT
    usage = only(events, Usage)
    assert isinstance(usage, Usage) and usage.exact
    assert usage.completion_tokens == len(model.pieces)
    assert only(events, Finish) == Finish("stop")


def test_characters_split_across_tokens_arrive_whole(
    tiny_models: dict[str, TinyModel], backends: dict[str, LlamaCppStream]
) -> None:
    model = tiny_models["q8_0"]
    tokens = [e.text for e in backend_for(backends, model).stream(request(model)) if isinstance(e, Token)]
    assert "日" in tokens and "🎉" in tokens  # each arrives as one piece, after its last byte
    assert all("\ufffd" not in t for t in tokens)
    assert all(t for t in tokens)


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (1, "Hello"),
        (4, "Hello, world!"),
        (7, "Hello, world! é"),  # é's second byte is token 7
        (8, "Hello, world! é"),  # the cap falls inside 日 (1 of its 3 bytes)
        (9, "Hello, world! é"),  # still inside 日 (2 of 3 bytes)
        (10, "Hello, world! é日"),
        (11, "Hello, world! é日本"),
        (14, "Hello, world! é日本"),  # 3 of 🎉's 4 bytes
    ],
)
def test_the_cap_counts_tokens_and_never_leaves_garbage(
    tiny_models: dict[str, TinyModel], backends: dict[str, LlamaCppStream], cap: int, expected: str
) -> None:
    model = tiny_models["f16"]
    events = list(backend_for(backends, model).stream(request(model, max_tokens=cap)))
    assert text_of(events) == expected
    usage = only(events, Usage)
    assert isinstance(usage, Usage) and usage.completion_tokens == cap
    assert only(events, Finish) == Finish("length")


def test_a_reply_that_ends_exactly_at_the_cap_is_length(
    tiny_models: dict[str, TinyModel], backends: dict[str, LlamaCppStream]
) -> None:
    model = tiny_models["f16"]
    events = list(backend_for(backends, model).stream(request(model, max_tokens=len(model.pieces))))
    assert text_of(events) == SCRIPT
    assert only(events, Finish) == Finish("length")


def test_a_long_reply_stops_at_the_cap(looping: TinyModel, backends: dict[str, LlamaCppStream]) -> None:
    events = list(backend_for(backends, looping).stream(request(looping, max_tokens=300)))
    text = text_of(events)
    # "Hi", " ", four bytes of 🎉, "!": 7 tokens a round; 300 = 42 rounds and 6 tokens
    assert text == "Hi 🎉!" * 42 + "Hi 🎉"
    usage = only(events, Usage)
    assert isinstance(usage, Usage) and usage.completion_tokens == 300
    assert only(events, Finish) == Finish("length")


def test_sampling_options_are_accepted(
    tiny_models: dict[str, TinyModel], backends: dict[str, LlamaCppStream]
) -> None:
    model = tiny_models["q8_0"]
    sampled = Request(
        model=spec(model),
        messages=(Message("user", "hi"),),
        max_tokens=64,
        sampling=Sampling(temperature=0.7, top_p=0.9, top_k=20, seed=42),
    )
    # The successor's logit leads by ~30: sampling at a usual temperature still writes the script.
    assert text_of(list(backend_for(backends, model).stream(sampled))) == SCRIPT


def test_usage_counts_the_prompt_as_sent(
    tiny_models: dict[str, TinyModel], backends: dict[str, LlamaCppStream]
) -> None:
    from wai.tokens.local_template import tokenize_chat

    model = tiny_models["f16"]
    backend = backend_for(backends, model)
    req = Request(
        model=spec(model),
        messages=(Message("system", "be brief"), Message("user", "where is new york?")),
        max_tokens=8,
        sampling=GREEDY,
    )
    usage = only(list(backend.stream(req)), Usage)
    from wai.llama.native import NativeModel

    vocab = NativeModel.load(model.path, gpu_layers=0, vocab_only=True)
    assert isinstance(usage, Usage)
    assert usage.prompt_tokens == len(tokenize_chat(vocab, req.messages))


# The loaded model is kept


def test_the_model_loads_once(tmp_path: Path, tiny_models: dict[str, TinyModel]) -> None:
    backend = LlamaCppStream(threads=1)
    try:
        first = list(backend.stream(request(tiny_models["f16"])))
        second = list(backend.stream(request(tiny_models["f16"], "and then?")))
    finally:
        backend.close()
    assert isinstance(first[0], Loaded) and first[0].seconds > 0
    assert not any(isinstance(e, Loaded) for e in second)
    assert text_of(first) == text_of(second) == SCRIPT


def test_counting_with_the_backend_loads_the_file_once_and_reports_the_load(
    tiny_models: dict[str, TinyModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wai.llama import native

    loads: list[Path] = []
    real_load = native.NativeModel.load

    def counting_load(path: Path, *, gpu_layers: int, vocab_only: bool = False) -> native.NativeModel:
        loads.append(path)
        return real_load(path, gpu_layers=gpu_layers, vocab_only=vocab_only)

    monkeypatch.setattr(native.NativeModel, "load", staticmethod(counting_load))
    backend = LlamaCppStream(threads=1)
    try:
        asked = request(tiny_models["q8_0"])
        counted = backend.counter_on_model(asked.model).count_prompt(asked.messages)
        events = list(backend.stream(asked))
    finally:
        backend.close()
    assert len(loads) == 1
    assert isinstance(events[0], Loaded) and events[0].seconds > 0  # the load done for counting
    usage = only(events, Usage)
    assert isinstance(usage, Usage) and usage.prompt_tokens == counted
    assert text_of(events) == SCRIPT


def test_a_longer_request_grows_the_context_within_the_trained_one(looping: TinyModel) -> None:
    backend = LlamaCppStream(threads=1)
    try:
        small = list(backend.stream(request(looping, max_tokens=10)))
        small_ctx = backend.describe()["n_ctx"]
        large = list(backend.stream(request(looping, max_tokens=450)))
        large_ctx = backend.describe()["n_ctx"]
        again = list(backend.stream(request(looping, max_tokens=10)))
    finally:
        backend.close()
    assert isinstance(small_ctx, int) and isinstance(large_ctx, int)
    assert small_ctx < 450 <= large_ctx <= looping.context_length
    assert any(isinstance(e, Loaded) for e in large)
    assert not any(isinstance(e, Loaded) for e in again)
    assert text_of(small) == text_of(again) == "Hi 🎉!Hi "  # 10 tokens: 7, then "Hi", " " and a byte
    usage = only(large, Usage)
    assert isinstance(usage, Usage) and usage.completion_tokens == 450


def test_a_prompt_and_reply_over_the_trained_context_is_refused(
    tiny_models: dict[str, TinyModel], backends: dict[str, LlamaCppStream]
) -> None:
    model = tiny_models["f16"]
    with pytest.raises(WindowError) as caught:
        list(backend_for(backends, model).stream(request(model, "x" * 600, max_tokens=16)))
    assert caught.value.exit_code == 3
    assert "512" in str(caught.value)


# Stopping


def test_closing_the_stream_stops_generation(looping: TinyModel, backends: dict[str, LlamaCppStream]) -> None:
    backend = backend_for(backends, looping)
    events = backend.stream(request(looping, max_tokens=400))
    received = [next(events) for _ in range(4)]
    started = time.perf_counter()
    events.close()
    assert time.perf_counter() - started < 0.5
    assert not any(isinstance(e, Usage | Finish) for e in received)
    with pytest.raises(StopIteration):
        next(events)
    # The next turn starts cleanly from what the context really holds.
    follow = list(backend.stream(request(looping, max_tokens=7)))
    assert text_of(follow) == "Hi 🎉!"


def test_ctrl_c_while_streaming_leaves_the_backend_usable(
    looping: TinyModel, backends: dict[str, LlamaCppStream]
) -> None:
    backend = backend_for(backends, looping)
    events = backend.stream(request(looping, max_tokens=400))
    pieces = []
    with pytest.raises(KeyboardInterrupt):
        for event in events:
            if isinstance(event, Token):
                pieces.append(event.text)
            if len(pieces) == 3:
                events.throw(KeyboardInterrupt)  # as if Ctrl-C arrived between two tokens
    assert "".join(pieces) == "Hi 🎉"
    follow = list(backend.stream(request(looping, "again", max_tokens=7)))
    assert text_of(follow) == "Hi 🎉!"


@pytest.mark.e2e
def test_ctrl_c_while_reading_a_long_prompt_stops_inside_the_batch(tmp_path: Path) -> None:
    from wai.llama import native

    model = build_tiny_llama(tmp_path / "long.f16.gguf", ftype="f16", script="Hi!", context_length=8192)
    windows = {"context_window": 7000, "max_output": 1000, "total_context": 8192}
    backend = LlamaCppStream(threads=1)
    try:
        # Loaded, with a context big enough, before the clock starts: only the prompt is left to read.
        assert text_of(list(backend.stream(request(model, "hi", max_tokens=6100, **windows)))) == "Hi!"
        main = threading.main_thread().ident
        assert main is not None
        ctrl_c = threading.Timer(0.3, signal.pthread_kill, args=(main, signal.SIGINT))
        with native.LOG.capture() as lines, pytest.raises(KeyboardInterrupt):
            ctrl_c.start()  # about 6,000 tokens: seconds of reading with one thread
            list(backend.stream(request(model, "abcde" * 1200, max_tokens=8, **windows)))
        ctrl_c.join()
        # Only the abort callback makes llama_decode give up in the middle of a batch.
        assert any("failed to decode, ret = 2" in line for _, line in lines)
        follow = list(backend.stream(request(model, "again", max_tokens=64, **windows)))
        assert text_of(follow) == "Hi!"
    finally:
        backend.close()


# Files that cannot run


def test_a_missing_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.gguf"
    with pytest.raises(ConfigError) as caught:
        list(LlamaCppStream(threads=1).stream(request(missing)))
    assert str(missing) in str(caught.value)
    assert "models folder" in str(caught.value)


def test_a_missing_builtin_file_says_wai_setup(tmp_path: Path) -> None:
    missing = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(ConfigError, match="wai setup"):
        list(LlamaCppStream(threads=1).stream(request(missing)))


def test_a_model_without_local_weights_is_a_configuration_error() -> None:
    remote_only = Request(model=spec(Path("x"), gguf=None), messages=(Message("user", "hi"),), max_tokens=4)
    with pytest.raises(ConfigError, match="no local weights"):
        list(LlamaCppStream(threads=1).stream(remote_only))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>" * 3, "web page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 7\n", "Git LFS pointer"),
        (b"\x00" * 4096, "not a GGUF"),
    ],
)
def test_junk_files_are_refused_before_llama_cpp_sees_them(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(content)
    with pytest.raises(BackendError, match=expected) as caught:
        list(LlamaCppStream(threads=1).stream(request(junk)))
    assert caught.value.exit_code == 1


@pytest.mark.parametrize("keep", [0.5, 0.99, 30 / 192768])
def test_truncated_files_are_refused(tmp_path: Path, tiny_models: dict[str, TinyModel], keep: float) -> None:
    whole = tiny_models["f16"].path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: max(int(len(whole) * keep), 24)])
    with pytest.raises(BackendError, match="truncated"):
        list(LlamaCppStream(threads=1).stream(request(cut)))


@pytest.mark.e2e
def test_an_unsupported_architecture_is_named(tmp_path: Path) -> None:
    odd = build_tiny_llama(tmp_path / "odd.gguf", ftype="f16", script="Hi", architecture="frobnicator")
    with pytest.raises(BackendError, match="'frobnicator' architecture"):
        list(LlamaCppStream(threads=1).stream(request(odd)))


# What the app shows about the model


def test_precision_comes_from_the_file(tiny_models: dict[str, TinyModel]) -> None:
    backend = LlamaCppStream(threads=1)
    assert backend.precision(request(tiny_models["f16"])) == "f16"
    assert backend.precision(request(tiny_models["q8_0"])) == "q8_0"
    assert backend.precision(request(Path("/nonexistent.gguf"))) is None


def test_a_file_that_contradicts_the_catalog_gets_a_warning(tiny_models: dict[str, TinyModel]) -> None:
    backend = LlamaCpp("local", BackendSettings(local=LocalOptions(threads=1)))
    assert backend.warnings(request(tiny_models["f16"], precision="f16").model) == []
    assert backend.warnings(request(tiny_models["f16"], precision="fp16").model) == []
    notes = backend.warnings(request(tiny_models["f16"], precision="q8_0").model)
    assert len(notes) == 1 and "f16" in notes[0] and "q8_0" in notes[0]
    over = backend.warnings(request(tiny_models["q8_0"], total_context=4096, context_window=3000).model)
    assert len(over) == 1 and "512" in over[0]


def test_describe_reports_offload_threads_and_version(tiny_models: dict[str, TinyModel]) -> None:
    import llama_cpp

    backend = LlamaCppStream(threads=2, gpu_layers=0)
    facts = backend.describe()
    assert facts["llama_cpp_python"] == llama_cpp.__version__
    assert facts["gpu_offload_supported"] == bool(llama_cpp.llama_supports_gpu_offload())
    assert facts["gpu_offload_active"] is False and facts["gpu_layers"] == 0
    assert facts["threads"] == 2
    default = LlamaCppStream().gpu_layers()
    assert default == (-1 if llama_cpp.llama_supports_gpu_offload() else 0)


def test_llama_cpp_logs_stay_off_the_terminal(
    tmp_path: Path, tiny_models: dict[str, TinyModel], capfd: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "fresh.gguf"  # a file not loaded before, so llama.cpp logs its loading
    copy.write_bytes(tiny_models["q8_0"].path.read_bytes())
    backend = LlamaCppStream(threads=1)
    assert text_of(list(backend.stream(request(copy)))) == SCRIPT
    backend.close()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    chatty = LlamaCppStream(threads=1, debug=True)
    list(chatty.stream(request(copy)))
    chatty.close()
    assert "llama" in capfd.readouterr().err


# -m path/to/file.gguf


def test_spec_for_a_file_outside_the_catalog_uses_its_trained_context(
    tiny_models: dict[str, TinyModel],
) -> None:
    found = spec_for_gguf(tiny_models["q8_0"].path, Catalog())
    assert (found.total_context, found.max_output, found.context_window) == (512, 128, 384)
    assert found.remote is False and found.precision == "q8_0"
    assert found.id == str(tiny_models["q8_0"].path.resolve())  # whole, so -c finds it from anywhere
    assert (
        text_of(list(LlamaCppStream(threads=1).stream(Request(found, (Message("user", "hi"),), 64, GREEDY))))
        == SCRIPT
    )


def test_spec_for_a_catalog_file_is_its_entry(tiny_models: dict[str, TinyModel]) -> None:
    entry = spec(tiny_models["f16"], id="my-tiny", context_window=100, max_output=50, total_context=150)
    assert spec_for_gguf(tiny_models["f16"].path, Catalog(models={"my-tiny": entry})) == entry


def test_spec_for_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(WaiError, match="does not exist"):
        spec_for_gguf(tmp_path / "x.gguf", Catalog())


@pytest.mark.e2e
def test_a_llama_model_without_a_template_gets_the_llama_2_format(tmp_path: Path) -> None:
    from wai.tokens.local_template import llama2_prompt

    # The model writes the script only after "]", the last character of "[/INST]".
    plain = build_tiny_llama(
        tmp_path / "plain.gguf", ftype="f16", script="Sure!", chat_template=None, after="<0x5D>"
    )
    backend = LlamaCppStream(threads=1)
    messages = (Message("system", "be brief"), Message("user", "hi"))
    events = list(backend.stream(Request(spec(plain), messages, 16, GREEDY)))
    backend.close()
    assert text_of(events) == "Sure!"
    assert llama2_prompt(messages).endswith("hi [/INST]")


_CONTEXT_TOO_BIG = """
import resource
import sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
from wai.backends.llama_cpp.stream import LlamaCppStream
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.backends.request import Request
from wai.errors import WaiError
spec = ModelSpec("huge", 1 << 23, 1 << 23, 1 << 24, remote=False, gguf=sys.argv[1])
try:
    list(LlamaCppStream(threads=1, gpu_layers=0).stream(Request(spec, (Message("user", "hi"),), 1 << 23)))
except WaiError as exc:
    print(exc)
    sys.exit(exc.exit_code)
"""


@pytest.mark.e2e
def test_not_enough_memory_for_the_context_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("a GPU build reserves more address space than the limit below")
    # A reply of 2^23 tokens needs a 4 GB KV cache. The child runs with its address space capped
    # at 2 GB, so the allocation fails the same way whatever the machine's memory.
    huge = build_tiny_llama(tmp_path / "huge.gguf", ftype="f16", script="Hi", context_length=1 << 24)

    # The child caps itself: a preexec_fn would run Python in a child forked from this threaded
    # process, before its exec.
    done = subprocess.run(
        [sys.executable, "-c", _CONTEXT_TOO_BIG, str(huge.path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert "not enough memory" in done.stdout
    assert "Traceback" not in done.stderr and done.stderr == ""


@pytest.mark.e2e
def test_a_sentencepiece_reply_does_not_start_with_the_word_start_space(tmp_path: Path) -> None:
    spaced = build_tiny_llama(tmp_path / "spaced.gguf", ftype="f16", script=" Sure, ok")
    assert spaced.pieces[0] == "\u2581Sure"  # the first token carries a space, as Llama-2's do
    backend = LlamaCppStream(threads=1)
    assert text_of(list(backend.stream(request(spaced)))) == "Sure, ok"
    backend.close()

"""Counting a 3,000-token prompt, as a ratio to llama.cpp tokenizing the same text directly.

For each vocabulary (remote Llama-2, remote Llama-3, and a local model's own GGUF vocabulary)
it times a backend's counter's `count_text` on the text and `count_prompt` on a conversation holding
it, in the same run, against two baselines over the same bytes:

- `llama_cpp.Llama(vocab_only=True).tokenize`, the library's own call; it sizes its buffer from
  the trained context, which a vocabulary file lacks, so it tokenizes every text twice;
- one `llama_cpp.llama_tokenize` C call into a buffer of the right size: the floor.

A ratio of 1.00 against the floor means counting costs nothing over tokenizing; the template and
the Python around it are the difference.

The models are specs of our own (a family and windows), so no catalog change moves the figures.
Quick mode counts a few hundred tokens with a tiny generated model's vocabulary in each role.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import REPO, Figures, quick, sized, tiny_llamas

if TYPE_CHECKING:
    from wai.backends.base import BackendName
    from wai.catalog.entries import ModelSpec


def _best(action: Callable[[], object]) -> float:
    action()  # warm caches
    times = []
    for _ in range(sized(30, 2)):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def _vocab_dir() -> Path:
    """Installed vocabularies: the user's, else the repository's test cache (installed if needed)."""
    from wai.settings import vocab_dir
    from wai.tokens.vocabularies import FAMILY_VOCABULARIES, install_vocabularies

    wanted = next(iter(FAMILY_VOCABULARIES.values()))
    for candidate in (vocab_dir(), REPO / ".cache" / "vocab"):
        if (candidate / wanted).is_file():
            return candidate
    target = REPO / ".cache" / "vocab"
    install_vocabularies(target, print)
    return target


def main() -> Figures:
    with tempfile.TemporaryDirectory(prefix="wai-bench-") as home:
        # The user's vocabularies are looked for before WAI_HOME moves to the scratch folder.
        vocab_source = _tiny_vocabularies(Path(home) / "tiny") if quick() else _vocab_dir()
        os.environ["WAI_HOME"] = home
        os.environ.pop("WAI_MODELS", None)
        (Path(home) / "vocab").symlink_to(vocab_source, target_is_directory=True)
        return _run(vocab_source)


def _tiny_vocabularies(folder: Path) -> Path:
    """A tiny generated model's vocabulary under each name the cases below read."""
    from wai.tokens.vocabularies import FAMILY_VOCABULARIES

    folder.mkdir()
    tiny, _ = tiny_llamas(folder, words=64, layers=1, context=512)
    for name in FAMILY_VOCABULARIES.values():
        (folder / name).symlink_to(tiny)
    return folder


def _cases(vocab_source: Path) -> list[tuple[str, ModelSpec, BackendName, Path]]:
    """(label, model, backend, vocabulary file) for each vocabulary measured."""
    from wai.catalog.entries import ModelSpec
    from wai.tokens.vocabularies import FAMILY_VOCABULARIES

    def remote(family: str) -> ModelSpec:
        return ModelSpec(
            id=f"bench-{family}", context_window=7968, max_output=4096, total_context=7968, remote=True,
            family=family,
        )  # fmt: skip

    qwen2 = vocab_source / FAMILY_VOCABULARIES["qwen2"]
    local = ModelSpec(
        id="bench-local", context_window=32768, max_output=1024, total_context=32768, remote=False,
        gguf=str(qwen2),
    )  # fmt: skip
    return [
        ("remote llama-2", remote("llama-2"), "remote", vocab_source / FAMILY_VOCABULARIES["llama-2"]),
        ("remote llama-3", remote("llama-3"), "remote", vocab_source / FAMILY_VOCABULARIES["llama-3"]),
        ("local qwen2 gguf", local, "local", qwen2),
    ]


def _run(vocab_source: Path) -> Figures:
    import llama_cpp

    from wai.backends.registry import backend_named
    from wai.conversation import Message
    from wai.tokens.counters import VocabCounter

    target = sized(3000, 200)
    prose = (REPO / "README.md").read_text(encoding="utf-8")
    figures: Figures = {}
    if quick():
        print("quick mode: a tiny generated model's vocabulary stands in for each")
    print("ratios of our time to llama.cpp's: Llama.tokenize, and one llama_tokenize call (the floor)")
    print(f"{'':<25} {'count_text':>16} {'count_prompt':>18}   count_text: ours / Llama / floor")
    print(f"{'vocabulary':<18} {'tokens':>6} {'Llama':>9} {'floor':>7} {'Llama':>11} {'floor':>7}")
    for label, model, backend, path in _cases(vocab_source):
        counter = backend_named(backend).counter(model)
        if not isinstance(counter, VocabCounter):
            print(f"{label:<18} skipped: {counter.source}")
            continue
        text = _text_of(counter, prose, target)
        convo = (Message("system", "You are terse."), Message("user", text))
        direct = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        raw = text.encode("utf-8")
        c_vocab = llama_cpp.llama_model_get_vocab(direct.model)
        prompt_bytes = (counter.prompt_text(convo) or "").encode("utf-8")

        def count_text(counter: VocabCounter = counter, text: str = text) -> int:
            counter._last = None  # no memo: every call tokenizes, as a first count does
            return counter.count_text(text)

        def count_prompt(counter: VocabCounter = counter, convo: tuple[Message, ...] = convo) -> int:
            return counter.count_prompt(convo)

        def direct_text(direct: Any = direct, raw: bytes = raw) -> object:
            return direct.tokenize(raw, add_bos=False, special=False)

        def direct_prompt(direct: Any = direct, prompt: bytes = prompt_bytes) -> object:
            return direct.tokenize(prompt, add_bos=True, special=True)

        def floor_text(vocab: Any = c_vocab, raw: bytes = raw) -> object:
            return _c_tokenize(llama_cpp, vocab, raw, bos=False, special=False)

        def floor_prompt(vocab: Any = c_vocab, prompt: bytes = prompt_bytes) -> object:
            return _c_tokenize(llama_cpp, vocab, prompt, bos=True, special=True)

        try:
            ours_text, base_text, floor_t = _best(count_text), _best(direct_text), _best(floor_text)
            ours_prompt, base_prompt, floor_p = _best(count_prompt), _best(direct_prompt), _best(floor_prompt)
        finally:
            direct.close()
        tokens = counter.count_text(text)
        print(
            f"{label:<18} {tokens:>6} {ours_text / base_text:>8.2f}x {ours_text / floor_t:>6.2f}x"
            f" {ours_prompt / base_prompt:>10.2f}x {ours_prompt / floor_p:>6.2f}x"
            f"   {ours_text * 1e3:.2f} / {base_text * 1e3:.2f} / {floor_t * 1e3:.2f} ms"
        )
        figures.update(
            {
                f"{label} count_text / Llama": ours_text / base_text,
                f"{label} count_text / floor": ours_text / floor_t,
                f"{label} count_prompt / Llama": ours_prompt / base_prompt,
                f"{label} count_prompt / floor": ours_prompt / floor_p,
            }
        )
    return figures


def _c_tokenize(llama_cpp: Any, vocab: Any, raw: bytes, *, bos: bool, special: bool) -> int:
    capacity = len(raw) + 8
    buffer = (llama_cpp.llama_token * capacity)()
    return int(llama_cpp.llama_tokenize(vocab, raw, len(raw), buffer, capacity, bos, special))


def _text_of(counter: object, prose: str, tokens: int) -> str:
    """A prefix of `prose` (repeated as needed) of about `tokens` tokens."""
    from wai.tokens.counters import VocabCounter

    assert isinstance(counter, VocabCounter)
    while counter.count_text(prose) < tokens:
        prose += "\n" + prose
    points = counter.cut_points(prose)
    low, high = 0, len(points) - 1
    while low < high:
        mid = (low + high + 1) // 2
        if counter.count_text(prose[: points[mid]]) <= tokens:
            low = mid
        else:
            high = mid - 1
    return prose[: points[low]]


if __name__ == "__main__":
    main()

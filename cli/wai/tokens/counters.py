"""Token counters: how many tokens a text or a templated conversation costs a given model.

A local model counts with its own GGUF vocabulary, through the same `tokenize_chat` the local
backend uses to build the prompt it sends, so the count is the prompt. A remote model counts
with its family's vocabulary (installed by `wai setup`, see windows/vocabularies.py) and the family's Workers
AI prompt format (windows/remote_template.py). Without a vocabulary, or without llama-cpp-python, the
count is a documented estimate and every figure built on it is shown with a `~`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from wai import settings
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.tokens.estimate import estimate_tokens
from wai.tokens.remote_template import format_for
from wai.tokens.vocabularies import FAMILY_VOCABULARIES, vocabulary_for

if TYPE_CHECKING:
    from wai.llama.native import NativeModel

# Per-message cost of a chat template (role markers, separators) in the estimate.
_ESTIMATE_MESSAGE_OVERHEAD = 8
_ESTIMATE_PROMPT_OVERHEAD = 4


class TokenCounter(Protocol):
    """Counts tokens for one model. `exact` is False for an estimate (shown with a ~)."""

    exact: bool
    source: str  # where the counts come from, for `wai tokens` and --debug

    def count_text(self, text: str) -> int:
        """Tokens of `text` alone: no template, no BOS, special-token text counted as text."""
        ...

    def count_prompt(self, messages: Sequence[Message]) -> int:
        """Tokens of the prompt really sent: chat template applied, BOS and special tokens."""
        ...

    def cut_points(self, text: str) -> Sequence[int]:
        """Offsets in `text` where a cut leaves whole tokens: ascending, 0 and len(text) included."""
        ...

    def prompt_text(self, messages: Sequence[Message]) -> str | None:
        """The templated prompt as text, None when the template is not known."""
        ...


class EstimatedCounter:
    """A documented, conservative estimate for models whose vocabulary is not at hand.

    The text's cost by kind of text (windows/estimate.py: words, digits, punctuation, each
    script's characters), at the most any vocabulary wai knows of spends on it, plus a fixed
    cost per message for the chat template. Every figure built on it is marked approximate.
    """

    exact = False

    def __init__(self, why: str = "no vocabulary") -> None:
        self.source = f"estimate ({why})"

    def count_text(self, text: str) -> int:
        return estimate_tokens(text)

    def count_prompt(self, messages: Sequence[Message]) -> int:
        body = sum(self.count_text(m.content) + _ESTIMATE_MESSAGE_OVERHEAD for m in messages)
        return body + _ESTIMATE_PROMPT_OVERHEAD

    def cut_points(self, text: str) -> Sequence[int]:
        return range(len(text) + 1)

    def prompt_text(self, messages: Sequence[Message]) -> str | None:
        return None


class VocabCounter:
    """Exact counts from a llama.cpp vocabulary: a vocab-only NativeModel, or the backend's loaded one.

    `prompt_tokens` turns messages into the token ids really sent; `render` into the same
    prompt as text (for --dry-run).
    """

    exact = True

    def __init__(
        self,
        native: NativeModel,
        prompt_tokens: Callable[[Sequence[Message]], list[int]],
        render: Callable[[Sequence[Message]], str] | None,
        source: str,
    ) -> None:
        self.native = native
        self.source = source
        self._prompt_tokens = prompt_tokens
        self._render = render
        self._pieces: dict[int, bytes] = {}
        self._last: tuple[tuple[str, bool, bool], list[int]] | None = None

    def tokenize(self, text: str, *, bos: bool = False, special: bool = False) -> list[int]:
        """Token ids of `text`; `bos` adds BOS if the vocabulary has one; `special` parses special tokens."""
        # Fitting a long text asks for its tokens several times (its count, its cut points).
        key = (text, bos, special)
        if self._last is not None and self._last[0] == key:
            return list(self._last[1])
        ids = self.native.tokenize(text, add_special=bos, parse_special=special)
        self._last = (key, ids)
        return list(ids)

    def count_text(self, text: str) -> int:
        return len(self.tokenize(text))

    def prompt_tokens(self, messages: Sequence[Message]) -> list[int]:
        return self._prompt_tokens(messages)

    def count_prompt(self, messages: Sequence[Message]) -> int:
        return len(self._prompt_tokens(messages))

    def prompt_text(self, messages: Sequence[Message]) -> str | None:
        return self._render(messages) if self._render is not None else None

    def cut_points(self, text: str) -> Sequence[int]:
        """Token boundaries of `text`, from the bytes of each token's piece.

        A boundary inside a multi-byte character is skipped. If the pieces do not spell the text
        (a normalising vocabulary), every character boundary is offered instead: the search then
        takes a few more steps, and every cut is still counted exactly.
        """
        data = text.encode("utf-8")
        pieces = [self._piece(token) for token in self.tokenize(text)]
        spelled = b"".join(pieces)
        if spelled == data:
            offset = 0
        elif spelled == b" " + data:  # SentencePiece's space before the text, carried by the first piece
            offset = -1
        else:
            return range(len(text) + 1)
        points = [0]
        chars, last = 0, 0
        for piece in pieces:
            offset += len(piece)
            if offset <= last or (offset < len(data) and data[offset] & 0xC0 == 0x80):
                continue  # nothing of the text yet, or inside a character
            chars += len(data[last:offset].decode("utf-8"))
            points.append(chars)
            last = offset
        return points

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self.native.piece(token)
            self._pieces[token] = piece
        return piece


class RawCounter:
    """Counts a raw prompt (`--raw`) as the model receives it: the one message's text verbatim, no
    chat template; special-token text in it is the special token it names (a raw prompt spells
    its own template) and the vocabulary's BOS is added where it adds one (`raw_prompt_tokens`,
    which the local backend sends). An estimate counts the text, and one token for BOS.

    `wai tokens --raw`, `wai ask --raw` (its plan and its dry run) and `wai serve`'s raw
    requests all count through it, so they agree.
    """

    def __init__(self, inner: TokenCounter) -> None:
        self.inner = inner
        self.exact = inner.exact
        self.source = f"{inner.source}, raw prompt"

    def count_text(self, text: str) -> int:
        return self.inner.count_text(text)

    def count_prompt(self, messages: Sequence[Message]) -> int:
        return self.count_raw(messages[-1].content if messages else "")

    def count_raw(self, text: str) -> int:
        ids = self.raw_ids(text)
        return len(ids) if ids is not None else self.inner.count_text(text) + 1

    def raw_ids(self, text: str) -> list[int] | None:
        """The token ids the model receives for raw `text`; None where the count is an estimate."""
        if isinstance(self.inner, VocabCounter):
            return self.inner.tokenize(text, bos=True, special=True)
        return None

    def cut_points(self, text: str) -> Sequence[int]:
        return self.inner.cut_points(text)

    def prompt_text(self, messages: Sequence[Message]) -> str | None:
        return messages[-1].content if messages else ""

    def __getattr__(self, name: str) -> Any:
        # What else the inner counter offers (a server's warnings, the windows it told, whether it
        # cuts long prompts silently) holds for the raw prompt too.
        return getattr(self.inner, name)


def raw_prompt_tokens(native: NativeModel, text: str) -> list[int]:
    """A raw prompt's tokens as sent: special-token text parsed as the tokens it names, BOS added
    where the vocabulary adds one (as RawCounter counts it)."""
    return native.tokenize(text, add_special=True, parse_special=True)


def local_counter(model: ModelSpec) -> TokenCounter:
    """The count of a prompt for `model` run by llama.cpp on its GGUF file; an estimate without the file."""
    path = model.gguf_path()
    if path is None or not path.is_file():
        return EstimatedCounter(f"{path or 'no gguf'} not found")
    vocab = _vocabulary(path)
    if isinstance(vocab, EstimatedCounter):
        return vocab
    return counter_on_loaded(vocab, f"{path.name} (its own vocabulary)")


def counter_on_loaded(native: NativeModel, source: str) -> TokenCounter:
    """A local model's counter on its loaded vocabulary (or the backend's whole loaded model, which
    saves loading the file a second time): the prompt counted is the prompt the backend sends."""
    from wai.tokens import local_template

    def prompt_tokens(messages: Sequence[Message]) -> list[int]:
        return local_template.tokenize_chat(native, messages)

    def render(messages: Sequence[Message]) -> str:
        return local_template.render_prompt(messages, local_template.template_info(native))

    return VocabCounter(native, prompt_tokens, render, source)


def remote_counter(model: ModelSpec) -> TokenCounter:
    """The count of a prompt for `model` on Workers AI, with its family's vocabulary; else an estimate."""
    remote_format = format_for(model.family)
    if model.family is None or remote_format is None or model.family not in FAMILY_VOCABULARIES:
        if model.family is None:  # the catalog names no tokenizer family for it
            return EstimatedCounter("wai knows no vocabulary for this model")
        return EstimatedCounter(f"wai has no vocabulary of the {model.family} family")
    path = vocabulary_for(model.family, settings.vocab_dir())
    if path is None:
        return EstimatedCounter(f"{FAMILY_VOCABULARIES[model.family]} not installed; run `wai setup`")
    native = _vocabulary(path)
    if isinstance(native, EstimatedCounter):
        return native
    render, add_bos = remote_format.render, remote_format.add_bos

    def prompt_tokens(messages: Sequence[Message]) -> list[int]:
        return native.tokenize(render(messages), add_special=add_bos, parse_special=True)

    return VocabCounter(native, prompt_tokens, render, f"{path.name} ({model.family} family)")


def _vocabulary(path: Path) -> NativeModel | EstimatedCounter:
    """The vocabulary at `path`, or the estimate (saying why) when it cannot be had."""
    from wai.tokens.vocab_load import load_or_why

    vocab, why = load_or_why(path)
    if vocab is None:
        return EstimatedCounter(why or f"llama.cpp cannot read {path}")
    return vocab

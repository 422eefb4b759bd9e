"""The estimate against the vocabularies wai installs: the calibration table, per kind of text.

For each text of the corpus (tests/tokens/estimate_corpus/KIND.txt) the estimate
(wai.tokens.estimate) is set against the count of every vocabulary given (the 19 of `wai setup`
and the built-in SmolLM2), and reported as a ratio to the largest of them: below 1 the estimate
undercounts that vocabulary, above 1 it overcounts. tests/tokens/test_estimate.py holds the
ratios to their bounds; run this module to print the table:

    python -m tests.support.estimate_table [VOCAB_DIR] [SMOLLM2_GGUF]

(by default the test cache, `.cache/vocab/` and `.cache/builtin/`, as the tests install them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wai.catalog.builtin import Q4_1_FILE
from wai.tokens.estimate import estimate_tokens

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "tokens" / "estimate_corpus"
KINDS = tuple(sorted(path.stem for path in CORPUS.glob("*.txt")))


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    characters: int
    estimate: int
    largest: int  # the largest vocabulary's count
    largest_name: str
    smallest: int

    @property
    def ratio(self) -> float:
        return self.estimate / self.largest


def corpus_text(kind: str) -> str:
    return (CORPUS / f"{kind}.txt").read_text(encoding="utf-8")


def vocabulary_files(vocab_dir: Path, builtin: Path | None) -> list[Path]:
    files = sorted(vocab_dir.glob("ggml-vocab-*.gguf"))
    return files + ([builtin] if builtin is not None else [])


def vocabulary_name(path: Path) -> str:
    return path.name.removeprefix("ggml-vocab-").removesuffix(".gguf")


def counters(files: Sequence[Path]) -> dict[str, Callable[[str], int]]:
    """Each vocabulary's count of a text alone: no BOS, special-token text as text."""
    from wai.tokens.vocab_load import load_vocab

    def counter(path: Path) -> Callable[[str], int]:
        vocab = load_vocab(path.resolve())
        return lambda text: len(vocab.tokenize(text, add_special=False, parse_special=False))

    return {vocabulary_name(path): counter(path) for path in files}


def measure(text: str, kind: str, counts: dict[str, Callable[[str], int]]) -> Row:
    each = {name: count(text) for name, count in counts.items()}
    largest = max(each, key=lambda name: each[name])
    return Row(kind, len(text), estimate_tokens(text), each[largest], largest, min(each.values()))


def table(counts: dict[str, Callable[[str], int]]) -> list[Row]:
    return [measure(corpus_text(kind), kind, counts) for kind in KINDS]


def render(rows: Sequence[Row], vocabularies: int) -> str:
    lines = [
        f"estimate / largest count of {vocabularies} vocabularies, per kind of text",
        f"{'kind':<11} {'chars':>6} {'estimate':>9} {'largest':>8} {'ratio':>6}  {'smallest':>8}  largest in",
    ]
    lines += [
        f"{row.kind:<11} {row.characters:>6} {row.estimate:>9} {row.largest:>8} {row.ratio:>6.2f}"
        f"  {row.smallest:>8}  {row.largest_name}"
        for row in rows
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    vocab_dir = Path(argv[0]) if argv else REPO / ".cache" / "vocab"
    builtin = Path(argv[1]) if len(argv) > 1 else REPO / ".cache" / "builtin" / Q4_1_FILE
    files = vocabulary_files(vocab_dir, builtin if builtin.is_file() else None)
    if not files:
        print(f"no vocabularies in {vocab_dir}: run the tests once, or `wai setup`", file=sys.stderr)
        return 2
    print(render(table(counters(files)), len(files)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

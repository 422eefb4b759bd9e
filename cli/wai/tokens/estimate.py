"""The token estimate used where no vocabulary is at hand: an upper bound by kind of text.

Vocabularies agree on English and on code (the 19 that `wai setup` installs and the built-in
SmolLM2 count the same English prose within 17% of each other), but not on other scripts: one
Cyrillic text costs 719 tokens in one and 2,873 in another, one Chinese text 616 and 2,110. A
byte-level vocabulary with no merges for a script spends one token per byte of its UTF-8
encoding, and a SentencePiece vocabulary falls back to the bytes of every character it lacks.
Since the estimate is used when the model's vocabulary is unknown, it takes the largest:

- ASCII letters are counted by word, because every vocabulary has whole tokens for common
  English words: one token per word (a camelCase or ALLCAPS boundary starts a new word), plus
  one per `_WORD_LETTERS_PER_TOKEN` letters beyond `_WORD_FREE_LETTERS`, for long or rare words.
  Prose in another language written in Latin letters (French, German, Indonesian...) is split
  far more, since the vocabularies learnt mostly English: prose with few of the commonest
  English words (`_ENGLISH_WORDS`) and little punctuation (not code, not data) is counted at
  one token per `_FOREIGN_LETTERS_PER_TOKEN` letters beyond `_FOREIGN_FREE_LETTERS` instead.
- A run of letters and digits that mixes capitals, small letters and digits (a key, a hash,
  base64) costs a token per character: vocabularies have no merges for random letters.
- Digits cost one token each (Llama 2, Baichuan and DeepSeek split numbers into digits), as
  does each ASCII punctuation mark, symbol, newline and tab.
- A space is free where it joins the next word or character, as in every vocabulary; each
  further space of a run costs one (Baichuan and GPT-2 spend a token per space of indentation),
  and so does a space before a digit (SentencePiece vocabularies make it a token of its own).
- Every other character costs its block's weight in `_BLOCK_WEIGHTS` (the most tokens per
  character any of those vocabularies spends on random words of that block's letters), else one
  token per byte of its UTF-8 encoding, the most a byte-level vocabulary can spend on it.

The corpus under tests/tokens/estimate_corpus/ and tests/tokens/test_estimate.py hold the
estimate to that: never under the largest vocabulary's count by more than 10% on any kind of
text, and over it by at most 30% on English prose and code. Other scripts are overcounted
where the vocabularies at hand merge well (about 1.5 times the largest count on ordinary
Cyrillic, Greek or Chinese prose): that is the price of never sending more than the window.
"""

from __future__ import annotations

import math
import re

# How the estimate is made, in one line: `wai tokens` says it beside every estimated count.
HOW_ESTIMATED = (
    "an estimate by kind of text: each word (English or another language's), digit, punctuation "
    "mark and character of another script at the most any of 20 known vocabularies spends on it, "
    "so it counts high (English and code by up to 30%, other text by more) and at most 10% low"
)

# A word of ASCII letters costs one token up to this many letters, and one more per this many
# letters beyond: common words are whole tokens in every vocabulary, long and rare ones are not.
_WORD_FREE_LETTERS = 4
_WORD_LETTERS_PER_TOKEN = 3
# ALLCAPS words split worst (`GGML` is three tokens in Baichuan): one more token per this many.
_CAPITALS_PER_TOKEN = 3
# Words of another language: DeepSeek spends 3 to 4 tokens on `Leuchtturm` or `mercusuar`.
_FOREIGN_FREE_LETTERS = 2
_FOREIGN_LETTERS_PER_TOKEN = 2.0
# The commonest English words: nearly half the words of English prose, a tenth to a third of
# code's, under a tenth of other languages'. Prose with fewer than `_ENGLISH_SHARE` of them is
# taken for another language, in proportion; text whose characters are more than
# `_CODE_SYMBOLS` punctuation and symbols is code or data, whatever its words.
_ENGLISH_WORDS = frozenset({
    "the", "of", "and", "to", "a", "in", "is", "was", "that", "it", "for", "on", "with", "as", "by",
    "be", "at", "this", "from", "or", "an", "are", "not", "have", "has", "had", "but", "which",
    "were", "all", "their", "they", "you", "he", "she", "we", "his", "her", "its", "there", "been",
    "one", "will", "would", "can", "if", "so", "no", "more", "when", "who", "what", "about", "into",
    "than", "them", "these", "then", "out", "up", "only", "also", "other", "any", "may", "some",
    "such", "our", "my", "your"
})  # fmt: skip
_ENGLISH_SHARE = 0.15
_CODE_SYMBOLS = (0.05, 0.10)  # from wholly prose to wholly code

# Tokens per character, by block, where every vocabulary measured spends less than one token
# per UTF-8 byte (first code point, last code point, tokens): the most any of the 19
# vocabularies of `wai setup` and SmolLM2 spends on random words of the block's letters, spaces
# included, rounded up.
_BLOCK_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (0x00A0, 0x00BF, 1.9),  # Latin-1 punctuation and symbols: « » ° £ ©
    (0x00C0, 0x00FF, 1.6),  # Latin-1 letters: é ü ñ ß
    (0x0370, 0x03FF, 2.0),  # Greek
    (0x0400, 0x045F, 1.9),  # Cyrillic of Russian, Ukrainian, Serbian, Bulgarian
    (0x0900, 0x097F, 2.6),  # Devanagari
    (0x0E00, 0x0E7F, 2.6),  # Thai
    (0x2010, 0x2027, 1.8),  # typographic dashes, quotes and ellipsis: — “ ” ’ …
    (0x3040, 0x30FF, 2.2),  # Hiragana and Katakana
)


def _character_class(blocks: tuple[tuple[int, int, float], ...]) -> str:
    return "".join(f"{re.escape(chr(first))}-{re.escape(chr(last))}" for first, last, _ in blocks)


_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_ALPHANUMERIC_RUN = re.compile(r"[A-Za-z0-9+/]{20,}")
_DIGIT = re.compile(r"[0-9]")
_ONE_TOKEN_EACH = re.compile(r"[!-/:-@\[-`{-~\x00-\x1f\x7f]")  # punctuation, symbols, controls
_SPACE_RUN = re.compile(r" +")
_SPACE_BEFORE_DIGIT = re.compile(r" (?=[0-9])")
_NOT_ASCII = re.compile(r"[^\x00-\x7f]+")
_BLOCKS = tuple((re.compile(f"[{_character_class(((a, b, w),))}]"), w) for a, b, w in _BLOCK_WEIGHTS)
_ANY_BLOCK = re.compile(f"[{_character_class(_BLOCK_WEIGHTS)}]")
# A space before a character counted by its bytes: a token of its own where the vocabulary
# spells that character in bytes (Llama 2's byte fallback, DeepSeek's pre-tokenizer).
_SPACE_BEFORE_BYTES = re.compile(f" (?=[^\\x00-\\x7f{_character_class(_BLOCK_WEIGHTS)}])")


def estimate_tokens(text: str) -> int:
    """What `text` alone costs, at the most any vocabulary wai knows of spends on it, rounded up."""
    if not text:
        return 0
    cost = _ascii_cost(text)
    if not text.isascii():
        cost += _other_cost(text)
    return math.ceil(cost)


def _ascii_cost(text: str) -> float:
    cost = 0.0
    for run in _ALPHANUMERIC_RUN.findall(text):
        if _looks_random(run):
            cost += len(run)
            text = text.replace(run, "")
    words = _WORD.findall(text)
    symbols = _count(_ONE_TOKEN_EACH, text)
    cost += (
        _word_cost(words, _foreign_share(words, symbols / len(text) if text else 0.0))
        + _count(_DIGIT, text)
        + symbols
    )
    spaces = text.count(" ")
    if spaces:
        # The first space of a run joins what follows; the others are tokens of their own.
        cost += spaces - _count(_SPACE_RUN, text) + _count(_SPACE_BEFORE_DIGIT, text)
    return cost


def _looks_random(run: str) -> bool:
    """Capitals, small letters and digits mixed in one run: a key, a hash, base64."""
    return any(c.isdigit() for c in run) and any(c.isupper() for c in run) and any(c.islower() for c in run)


def _foreign_share(words: list[str], symbols: float) -> float:
    """How far the words are those of prose in a language other than English, from 0 to 1."""
    if not words:
        return 0.0
    english = sum(1 for word in words if word.lower() in _ENGLISH_WORDS) / len(words)
    low, high = _CODE_SYMBOLS
    prose = min(1.0, max(0.0, (high - symbols) / (high - low)))
    return prose * max(0.0, 1 - english / _ENGLISH_SHARE)


def _word_cost(words: list[str], foreign: float) -> float:
    lengths = [len(word) for word in words]
    english = sum(max(0, n - _WORD_FREE_LETTERS) for n in lengths) / _WORD_LETTERS_PER_TOKEN
    other = sum(max(0, n - _FOREIGN_FREE_LETTERS) for n in lengths) / _FOREIGN_LETTERS_PER_TOKEN
    capitals = sum(n for word, n in zip(words, lengths, strict=True) if n > 1 and word.isupper())
    return len(words) + (1 - foreign) * english + foreign * other + capitals / _CAPITALS_PER_TOKEN


def _other_cost(text: str) -> float:
    others = "".join(_NOT_ASCII.findall(text))
    cost = sum(weight * _count(block, others) for block, weight in _BLOCKS)
    # Every character of no listed block: one token per UTF-8 byte.
    cost += len(_ANY_BLOCK.sub("", others).encode("utf-8"))
    return cost + _count(_SPACE_BEFORE_BYTES, text)


def _count(pattern: re.Pattern[str], text: str) -> int:
    return len(pattern.findall(text))

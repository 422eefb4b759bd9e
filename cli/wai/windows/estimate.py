"""The token estimate used where no vocabulary is at hand: an upper bound by kind of text.

Vocabularies agree on English and on code (the 19 that `wai setup` installs and the built-in
SmolLM2 count the same English prose within 17% of each other), but not on other scripts: one
Cyrillic text costs 719 tokens in one and 2,873 in another, one Chinese text 616 and 2,110. A
byte-level vocabulary with no merges for a script spends one token per byte of its UTF-8
encoding, and a SentencePiece vocabulary falls back to the bytes of every character it lacks.
Since the estimate is used when the model's vocabulary is unknown, it takes the largest:

- ASCII letters are counted by word, because every vocabulary has whole tokens for common
  words: one token per word (a camelCase or ALLCAPS boundary starts a new word), plus one per
  `_WORD_LETTERS_PER_TOKEN` letters beyond `_WORD_FREE_LETTERS`, for long or rare words.
- Digits cost one token each (Llama 2, Baichuan and DeepSeek split numbers into digits), as
  does each ASCII punctuation mark, symbol, newline and tab.
- A space is free where it joins the next word or character, as in every vocabulary; each
  further space of a run costs one (Baichuan and GPT-2 spend a token per space of indentation),
  and so does a space before a digit (SentencePiece vocabularies make it a token of its own).
- Every other character costs its block's weight in `_BLOCK_WEIGHTS` (the most tokens per
  character any of those vocabularies spends on random words of that block's letters), else one
  token per byte of its UTF-8 encoding, the most a byte-level vocabulary can spend on it.

The corpus under tests/windows/estimate_corpus/ and tests/windows/test_estimate.py hold the
estimate to that: never under the largest vocabulary's count by more than 10% on any kind of
text, and over it by at most 30% on English prose and code. Other scripts are overcounted
where the vocabularies at hand merge well (up to 1.8 times the largest count on ordinary
Cyrillic prose): that is the price of never sending more than the window.
"""

from __future__ import annotations

import math
import re

# How the estimate is made, in one line: `wai tokens` says it beside every estimated count.
HOW_ESTIMATED = (
    "an estimate by kind of text: each word, digit, punctuation mark and character of another "
    "script at the most any of 20 known vocabularies spends on it, so it counts high (English "
    "and code by up to 30%, other scripts by more) and at most 10% low"
)

# A word of ASCII letters costs one token up to this many letters, and one more per this many
# letters beyond: common words are whole tokens in every vocabulary, long and rare ones are not.
_WORD_FREE_LETTERS = 4
_WORD_LETTERS_PER_TOKEN = 3
# ALLCAPS words split worst (`GGML` is three tokens in Baichuan): one more token per this many.
_CAPITALS_PER_TOKEN = 3

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
    words = _WORD.findall(text)
    long_letters = sum(max(0, len(word) - _WORD_FREE_LETTERS) for word in words)
    capitals = sum(len(word) for word in words if len(word) > 1 and word.isupper())
    cost = (
        len(words)
        + long_letters / _WORD_LETTERS_PER_TOKEN
        + capitals / _CAPITALS_PER_TOKEN
        + _count(_DIGIT, text)
        + _count(_ONE_TOKEN_EACH, text)
    )
    spaces = text.count(" ")
    if spaces:
        # The first space of a run joins what follows; the others are tokens of their own.
        cost += spaces - _count(_SPACE_RUN, text) + _count(_SPACE_BEFORE_DIGIT, text)
    return cost


def _other_cost(text: str) -> float:
    others = "".join(_NOT_ASCII.findall(text))
    cost = sum(weight * _count(block, others) for block, weight in _BLOCKS)
    # Every character of no listed block: one token per UTF-8 byte.
    cost += len(_ANY_BLOCK.sub("", others).encode("utf-8"))
    return cost + _count(_SPACE_BEFORE_BYTES, text)


def _count(pattern: re.Pattern[str], text: str) -> int:
    return len(pattern.findall(text))

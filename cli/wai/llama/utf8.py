"""Which tokens keep a reply valid UTF-8, given the bytes before them.

llama.cpp's grammar reads the bytes of tokens leniently: a lead byte it can count continuation
bytes for makes a character, so an overlong form (C1 A1 for "a"), a surrogate (ED A0 80) or a lead
byte above F4 passes as one. A text held to a grammar could then still be no UTF-8 at all, and
read back (with U+FFFD for each bad byte) break the very lengths the grammar held. Under a grammar
the sampler also rules out the tokens that would make invalid UTF-8 (Unicode's table of
well-formed byte sequences, 3-7), so what the grammar counts is what a reader gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Continuation bytes still needed, and the range the next byte must fall in.
State = tuple[int, int, int]
START: State = (0, 0x80, 0xBF)
_ANY = (0x80, 0xBF)
# A lead byte: how many continuation bytes follow, and the range of the first (Table 3-7).
_LEADS: dict[int, tuple[int, int, int]] = {
    **{b: (1, *_ANY) for b in range(0xC2, 0xE0)},
    0xE0: (2, 0xA0, 0xBF),
    **{b: (2, *_ANY) for b in range(0xE1, 0xED)},
    0xED: (2, 0x80, 0x9F),
    0xEE: (2, *_ANY),
    0xEF: (2, *_ANY),
    0xF0: (3, 0x90, 0xBF),
    0xF1: (3, *_ANY),
    0xF2: (3, *_ANY),
    0xF3: (3, *_ANY),
    0xF4: (3, 0x80, 0x8F),
}


def scan(state: State, data: bytes) -> State | None:
    """The state after `data`, None when `data` breaks UTF-8 there."""
    needed, low, high = state
    for byte in data:
        if needed:
            if not low <= byte <= high:
                return None
            needed, low, high = needed - 1, *_ANY
        elif byte >= 0x80:
            lead = _LEADS.get(byte)
            if lead is None:
                return None
            needed, low, high = lead
    return (needed, low, high)


class Utf8Guard:
    """Follows a reply's bytes token by token; says which tokens may come next."""

    def __init__(self, pieces: Sequence[bytes], masks: dict[State, Any]) -> None:
        self.pieces = pieces
        self.masks = masks  # per state, every token's verdict (numpy booleans), kept by the model
        self.state = START

    def allows(self, token: int) -> bool:
        return scan(self.state, self.pieces[token]) is not None

    def mask(self) -> Any:
        """Whether each token of the vocabulary may come next (a numpy array of booleans)."""
        found = self.masks.get(self.state)
        if found is None:
            import numpy as np

            found = np.fromiter(
                (scan(self.state, piece) is not None for piece in self.pieces),
                dtype=bool,
                count=len(self.pieces),
            )
            self.masks[self.state] = found
        return found

    def advance(self, token: int) -> None:
        self.state = scan(self.state, self.pieces[token]) or START

"""The UTF-8 rules the sampler holds a grammar's reply to (Unicode's well-formed byte sequences)."""

from __future__ import annotations

import pytest

from wai.llama.utf8 import START, Utf8Guard, scan


@pytest.mark.parametrize("text", ["a", "é", "日本", "🎉", "\U0010ffff", "\ud7ff", "\ue000"])
def test_every_character_scans_back_to_the_start(text: str) -> None:
    assert scan(START, text.encode("utf-8")) == START


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1\xa1",  # an overlong "a": llama.cpp's grammar reads it as "a"
        b"\xe0\x80\x80",  # an overlong NUL
        b"\xed\xa0\x80",  # a surrogate
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xf8\x88\x80\x80",  # no such lead byte
        b"\x80",  # a continuation with nothing to continue
        b"\xe6\x97a",  # a character cut by another
    ],
)
def test_what_is_not_utf8_is_refused_at_the_byte_that_breaks_it(data: bytes) -> None:
    assert scan(START, data) is None


def test_a_character_split_across_tokens_is_followed() -> None:
    pieces = [b"\xe6", b"\x97", b"\xa5", b"a", b"\x80"]  # 日 in three tokens
    guard = Utf8Guard(pieces, {})
    assert guard.allows(0) and not guard.allows(4)
    guard.advance(0)
    assert not guard.allows(3) and guard.allows(1)  # "a" cannot cut the character
    assert list(guard.mask()) == [False, True, True, False, True]
    guard.advance(1)
    guard.advance(2)
    assert guard.state == START and guard.allows(3)

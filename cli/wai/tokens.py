"""Token counters: how many tokens a text or a templated conversation costs a given model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from wai.conversation import Message

# Per-message cost of a chat template (role markers, separators) in the estimate.
_ESTIMATE_MESSAGE_OVERHEAD = 8
_ESTIMATE_PROMPT_OVERHEAD = 4
_ESTIMATE_BYTES_PER_TOKEN = 3


class TokenCounter(Protocol):
    """Counts tokens for one model. `exact` is False for an estimate (shown with a ~)."""

    exact: bool

    def count_text(self, text: str) -> int:
        """Tokens of `text` alone: no template, no BOS."""
        ...

    def count_prompt(self, messages: Sequence[Message]) -> int:
        """Tokens of the prompt really sent: chat template applied, BOS and special tokens."""
        ...


class EstimatedCounter:
    """A documented estimate for models whose vocabulary is not at hand.

    One token per three UTF-8 bytes, rounded up, plus a fixed cost per message for the chat
    template. English prose runs near four bytes per token in Llama-family vocabularies, so the
    estimate usually counts high, which keeps requests inside the window; every figure built on
    it is marked approximate.
    """

    exact = False

    def count_text(self, text: str) -> int:
        size = len(text.encode("utf-8"))
        return -(-size // _ESTIMATE_BYTES_PER_TOKEN)

    def count_prompt(self, messages: Sequence[Message]) -> int:
        body = sum(self.count_text(m.content) + _ESTIMATE_MESSAGE_OVERHEAD for m in messages)
        return body + _ESTIMATE_PROMPT_OVERHEAD

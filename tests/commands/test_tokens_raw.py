"""One rule for raw text: `wai tokens --raw` counts what `wai ask --raw` sends, special-token text
as the special tokens it names and BOS where the vocabulary adds one, on local and remote models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_wai
from tests.support.vocab_fixture import builtin_vocab, vocab_cache, vocab_home
from wai.catalog.entries import load_catalog
from wai.tokens.counters import raw_prompt_tokens
from wai.tokens.vocab_load import load_vocab
from wai.tokens.vocabularies import FAMILY_VOCABULARIES

__all__ = ["builtin_vocab", "vocab_cache", "vocab_home"]

pytest.importorskip("llama_cpp")

# Remote models of each family with a vocabulary, and raw texts that spell its special tokens.
REMOTE = {
    "@cf/qwen/qwen2.5-coder-32b-instruct": ["<|im_end|>", "<|im_start|>user\nhi<|im_end|>\n", "plain"],
    "@cf/meta/llama-3.1-8b-instruct": ["<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nhi"],
    "@cf/meta/llama-2-7b-chat-fp16": ["<s>[INST] hi [/INST]", "</s>"],
}
# The built-in SmolLM2 speaks ChatML, as the report that two commands disagreed did.
LOCAL = ["<|im_end|>", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "plain"]


def _counts(model: str, text: str, *backend: str) -> tuple[int, int]:
    counted = run_wai("tokens", "--raw", "--json", *backend, "-m", model, "--no-stdin", text)
    planned = run_wai("ask", "--raw", "--dry-run", *backend, "-m", model, "--no-stdin", text)
    assert counted.returncode == 0 and planned.returncode == 0, (counted.stderr, planned.stderr)
    report, plan = json.loads(counted.stdout), json.loads(planned.stdout)
    assert report["raw"] is True and plan["raw"] is True
    assert report["counted_with"] == plan["counted_with"]
    return int(report["tokens"]), int(plan["prompt_tokens"])


@pytest.mark.parametrize("model", sorted(REMOTE))
def test_a_remote_models_raw_prompt_is_counted_as_sent_by_both_commands(vocab_home: Path, model: str) -> None:
    family = load_catalog().get(model).family
    native = load_vocab((vocab_home / FAMILY_VOCABULARIES[str(family)]).resolve())
    for text in REMOTE[model]:
        sent = len(raw_prompt_tokens(native, text))
        assert _counts(model, text) == (sent, sent), text


def test_a_local_models_raw_prompt_is_counted_as_the_backend_sends_it(builtin_vocab: Path) -> None:
    native = load_vocab(builtin_vocab.resolve())
    for text in LOCAL:
        sent = len(raw_prompt_tokens(native, text))  # what the local backend decodes
        assert _counts(str(builtin_vocab), text, "--backend", "local") == (sent, sent), text
    assert _counts(str(builtin_vocab), "<|im_end|>", "--backend", "local") == (1, 1)  # one token, no BOS
    shown = run_wai("tokens", "--raw", "-m", str(builtin_vocab), "--backend", "local", "<|im_end|>")
    assert shown.stdout.startswith("1 token (the raw prompt as sent: special-token text as special tokens")


def test_an_estimated_raw_count_adds_one_for_bos_in_both_commands() -> None:
    gemma = "@cf/google/gemma-3-12b-it"  # no vocabulary: the estimate
    counted, planned = _counts(gemma, "hi")
    assert counted == planned == 2

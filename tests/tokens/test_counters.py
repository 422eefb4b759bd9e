"""Exact token counts: llama.cpp's reference tokenizations, the prompts really sent, the estimate."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.counting import counter_for
from tests.support.vocab_fixture import vocab_cache, vocab_home
from wai.catalog.entries import ModelSpec, load_catalog
from wai.commands.ask import describe_dry_run
from wai.commands.tokens import count_report
from wai.conversation import Message
from wai.tokens import vocab_load
from wai.tokens.budget import plan_request
from wai.tokens.counters import EstimatedCounter, VocabCounter

__all__ = ["vocab_cache", "vocab_home"]

SEPARATOR = "\n__ggml_vocab_test__\n"

LLAMA2 = "@cf/meta/llama-2-7b-chat-fp16"
LLAMA3 = "@cf/meta/llama-3.1-8b-instruct"
QWEN2 = "@cf/qwen/qwen2.5-coder-32b-instruct"


def spec(model_id: str) -> ModelSpec:
    return load_catalog().get(model_id)


def local_spec(vocab_file: Path, **windows: int) -> ModelSpec:
    """A local model whose GGUF is one of llama.cpp's vocabulary files (no weights needed to count)."""
    return ModelSpec(
        id=f"local-{vocab_file.stem}",
        context_window=windows.get("context_window", 4096),
        max_output=windows.get("max_output", 1024),
        total_context=windows.get("total_context", 8192),
        remote=False,
        gguf=str(vocab_file),
    )


def reference_cases(vocab_file: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's test-tokenizer-0 pairs: texts split by a marker line, one line of ids per text."""
    raw = vocab_file.with_name(vocab_file.name + ".inp").read_bytes().decode("utf-8")
    texts = raw.split(SEPARATOR)
    if raw.endswith(SEPARATOR):
        texts.pop()
    lines = vocab_file.with_name(vocab_file.name + ".out").read_text(encoding="utf-8").splitlines()
    assert len(texts) == len(lines)
    return [(text, [int(t) for t in line.split()]) for text, line in zip(texts, lines, strict=True)]


@pytest.mark.parametrize(
    ("model_id", "vocab_name"),
    [
        (LLAMA2, "ggml-vocab-llama-spm.gguf"),
        (LLAMA3, "ggml-vocab-llama-bpe.gguf"),
        (QWEN2, "ggml-vocab-qwen2.gguf"),
    ],
)
def test_raw_counts_reproduce_llama_cpp_reference_tokenizations(
    vocab_home: Path, model_id: str, vocab_name: str
) -> None:
    cases = reference_cases(vocab_home / vocab_name)
    assert len(cases) > 30
    model = spec(model_id)
    counter = counter_for(model, "remote")
    assert isinstance(counter, VocabCounter)
    bos = counter.tokenize("", bos=True)
    for text, expected in cases:
        assert counter.tokenize(text) == expected, text
        report = count_report(model, "remote", text=text, raw=True, include_ids=True)
        assert report["exact"] is True
        if counter.tokenize(text, special=True) == expected:  # no special-token text in it
            # A raw prompt as sent: the vocabulary's BOS, then the text.
            assert report["ids"] == bos + expected, text
            assert report["tokens"] == len(bos) + len(expected), text


def test_raw_counts_of_a_local_model_use_its_own_vocabulary(vocab_home: Path) -> None:
    vocab_file = vocab_home / "ggml-vocab-llama-spm.gguf"
    model = local_spec(vocab_file)
    for text, expected in reference_cases(vocab_file):
        ids = count_report(model, "local", text=text, raw=True, include_ids=True)["ids"]
        assert ids == [1, *expected], text  # Llama 2's BOS, then the text


def test_raw_counts_special_token_text_as_the_special_token(vocab_home: Path) -> None:
    report = count_report(spec(LLAMA3), "remote", text="<|eot_id|>", raw=True, include_ids=True)
    assert report["ids"] == [128000, 128009]  # <|begin_of_text|> and <|eot_id|>
    assert report["tokens"] == 2


def segments(counter: VocabCounter, *parts: str | int) -> list[int]:
    """Token ids built piece by piece: ints are special tokens, strings are encoded on their own."""
    ids: list[int] = []
    for part in parts:
        ids.extend([part] if isinstance(part, int) else counter.tokenize(part))
    return ids


def test_remote_llama2_prompt_is_the_workers_ai_template_with_bos(vocab_home: Path) -> None:
    counter = counter_for(spec(LLAMA2), "remote")
    assert isinstance(counter, VocabCounter)
    convo = (
        Message("system", "Be brief."),
        Message("user", "Where is New York?"),
        Message("assistant", "In the USA."),
        Message("user", "And Paris?"),
    )
    assert counter.prompt_text(convo) == (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhere is New York? [/INST] In the USA.</s>"
        "<s>[INST] And Paris? [/INST]"
    )
    bos, eos = 1, 2
    # Each turn encoded on its own, as Meta's reference code does: the same ids.
    expected = segments(
        counter,
        bos,
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhere is New York? [/INST] In the USA.",
        eos,
        bos,
        "[INST] And Paris? [/INST]",
    )
    assert counter.prompt_tokens(convo) == expected
    assert counter.count_prompt(convo) == len(expected)


def test_remote_llama3_prompt_is_the_llama3_template(vocab_home: Path) -> None:
    counter = counter_for(spec(LLAMA3), "remote")
    assert isinstance(counter, VocabCounter)
    convo = (Message("system", "Be brief."), Message("user", "Where is New York?"))
    begin, header, end_header, eot = 128000, 128006, 128007, 128009
    expected = [begin, header, *segments(counter, "system"), end_header, *segments(counter, "\n\nBe brief.")]
    expected += [
        eot,
        header,
        *segments(counter, "user"),
        end_header,
        *segments(counter, "\n\nWhere is New York?"),
    ]
    expected += [eot, header, *segments(counter, "assistant"), end_header, *segments(counter, "\n\n")]
    assert counter.prompt_tokens(convo) == expected


def test_local_counts_are_the_tokens_the_local_backend_sends(vocab_home: Path) -> None:
    from wai.llama.native import NativeModel
    from wai.tokens import local_template

    convo = (Message("system", "Be brief."), Message("user", "Où est New York ? 🗽"))
    for name in ("ggml-vocab-llama-spm.gguf", "ggml-vocab-qwen2.gguf"):
        path = vocab_home / name
        counter = counter_for(local_spec(path), "local")
        assert counter.exact
        sent = local_template.tokenize_chat(NativeModel.load(path, gpu_layers=0, vocab_only=True), convo)
        assert isinstance(counter, VocabCounter)
        assert counter.prompt_tokens(convo) == sent
        assert counter.count_prompt(convo) == len(sent)


def test_cut_points_are_token_boundaries_never_inside_a_character(vocab_home: Path) -> None:
    text = "Grüße aus Köln 🗽 — naïve café, 東京タワー!"
    for model_id in (LLAMA2, LLAMA3):
        counter = counter_for(spec(model_id), "remote")
        points = list(counter.cut_points(text))
        assert points[0] == 0 and points[-1] == len(text)
        assert points == sorted(set(points))
        # Every head cut is whole tokens of the text: its tokens are a prefix of the text's.
        whole = counter.count_text(text)
        assert len(points) > whole // 2
        for point in points:
            text[:point].encode("utf-8")  # a str slice cannot split a character; check it round-trips
            assert counter.count_text(text[:point]) <= whole


def test_missing_vocabulary_falls_back_to_an_estimate_marked_approximate(isolated_home: Path) -> None:
    report = count_report(spec(LLAMA2), "remote", text="hello there")
    assert report["exact"] is False
    assert str(report["display"]).startswith("~")
    assert "wai setup" in str(report["counted_with"])


def test_family_without_vocabulary_is_estimated(vocab_home: Path) -> None:
    counter = counter_for(spec("@cf/mistral/mistral-7b-instruct-v0.1"), "remote")
    assert isinstance(counter, EstimatedCounter)
    plan = plan_request(
        spec("@cf/mistral/mistral-7b-instruct-v0.1"),
        (Message("user", "x" * 9000),),
        counter,
        fit="head",
    )
    assert not plan.exact
    assert any("~" in notice for notice in plan.notices)


def test_missing_llama_cpp_falls_back_to_an_estimate(
    vocab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wai.llama import native

    vocab_load.load_vocab.cache_clear()
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    counter = counter_for(spec(LLAMA2), "remote")
    assert isinstance(counter, EstimatedCounter)
    assert "not installed" in counter.source
    monkeypatch.undo()
    vocab_load.load_vocab.cache_clear()


def test_missing_local_file_is_estimated(isolated_home: Path) -> None:
    model = local_spec(isolated_home / "nowhere.gguf")
    assert counter_for(model, "local").exact is False


def test_count_report_against_the_windows(vocab_home: Path) -> None:
    model = spec(LLAMA2)
    report = count_report(model, "remote", messages=(Message("user", "hello"),), include_ids=True)
    assert report["exact"] is True
    # No system prompt: the SDK's text starts with <s>, and the tokenizer adds its own BOS.
    assert report["ids"] == [1, 1, 518, 25580, 29962, 22172, 518, 29914, 25580, 29962]
    assert report["tokens"] == 10
    assert report["context_window"] == 3072 and report["max_output"] == 2500
    assert report["total_context"] == 4096 and report["fits"] is True
    assert report["reply_room"] == 2500


def test_dry_run_shows_the_templated_prompt_counts_and_max_tokens(vocab_home: Path) -> None:
    model = spec(LLAMA2)
    counter = counter_for(model, "remote")
    convo = (Message("system", "Be brief."), Message("user", "hi"))
    plan = plan_request(model, convo, counter)
    described = describe_dry_run(plan, model, "remote")
    assert described["prompt"] == "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nhi [/INST]"
    assert described["prompt_tokens"] == counter.count_prompt(convo)
    assert described["max_tokens"] == 2500
    assert described["exact"] is True


def test_dry_run_of_a_local_model_renders_its_template(vocab_home: Path) -> None:
    model = local_spec(vocab_home / "ggml-vocab-qwen2.gguf")
    counter = counter_for(model, "local")
    plan = plan_request(model, (Message("user", "hi"),), counter)
    prompt = describe_dry_run(plan, model, "local")["prompt"]
    assert isinstance(prompt, str)
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("model_id", [LLAMA2, LLAMA3, QWEN2])
def test_estimate_counts_high_for_prose_and_code(vocab_home: Path, model_id: str) -> None:
    import wai.conversation
    import wai.tokens.budget

    exact = counter_for(spec(model_id), "remote")
    estimate = EstimatedCounter()
    for module in (wai.tokens.budget, wai.conversation):
        text = Path(str(module.__file__)).read_text(encoding="utf-8")
        assert estimate.count_text(text) >= exact.count_text(text)
        convo: Sequence[Message] = (Message("system", "Be brief."), Message("user", text))
        assert estimate.count_prompt(convo) >= exact.count_prompt(convo)


def test_counters_are_cached_per_vocabulary(vocab_home: Path) -> None:
    first = counter_for(spec(LLAMA3), "remote")
    second = counter_for(replace(spec(LLAMA3), id="other"), "remote")
    assert isinstance(first, VocabCounter) and isinstance(second, VocabCounter)
    assert first.native is second.native


def test_dry_run_without_the_vocabulary_still_shows_the_remote_template(isolated_home: Path) -> None:
    model = spec(LLAMA3)
    counter = counter_for(model, "remote")
    plan = plan_request(model, (Message("user", "hi"),), counter)
    described = describe_dry_run(plan, model, "remote")
    assert described["exact"] is False
    assert described["prompt"] == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_wai_tokens_says_token_for_one(isolated_home: Path) -> None:
    from tests.support.cli import run_wai

    model = "@cf/google/gemma-3-12b-it"  # no family: counted by the estimate, a token a word
    one = run_wai("tokens", "-m", model, "--raw", "")  # BOS alone
    assert one.returncode == 0 and one.stdout.startswith("~1 token (the raw prompt as sent"), one.stdout
    two = run_wai("tokens", "-m", model, "--raw", "x")
    assert two.stdout.startswith("~2 tokens (the raw prompt as sent"), two.stdout

"""The prompt a local model receives: the GGUF's template, the Llama-2 and ChatML formats, and BOS."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.tiny_gguf import BOS, CHAT_TEMPLATE, build_tiny_llama
from wai.conversation import Message
from wai.errors import ChatTemplateError
from wai.tokens.local_template import (
    TemplateInfo,
    chatml_prompt,
    llama2_prompt,
    render_prompt,
    tokenize_chat,
)

if TYPE_CHECKING:
    from wai.llama.native import NativeModel

SYSTEM = Message("system", "Be brief.")
USER = Message("user", "Where is New York?")
REPLY = Message("assistant", "In the USA.")
FOLLOW = Message("user", "And Paris?")

# SmolLM2-135M-Instruct's own template, as its GGUF carries it.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_llama_2_format_puts_the_system_prompt_in_the_first_instruction() -> None:
    assert (
        llama2_prompt((SYSTEM, USER))
        == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhere is New York? [/INST]"
    )


def test_llama_2_format_of_a_conversation() -> None:
    assert llama2_prompt((SYSTEM, USER, REPLY, FOLLOW)) == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhere is New York? [/INST] In the USA.</s>"
        "<s>[INST] And Paris? [/INST]"
    )
    assert llama2_prompt((USER,)) == "<s>[INST] Where is New York? [/INST]"
    assert llama2_prompt((SYSTEM,)) == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n [/INST]"


def test_chatml_format() -> None:
    assert chatml_prompt((SYSTEM, USER)) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhere is New York?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_the_gguf_template_is_rendered_like_transformers_does() -> None:
    info = TemplateInfo(template=SMOLLM2_TEMPLATE, bos_token="<|im_start|>", eos_token="<|im_end|>")
    assert render_prompt((USER,), info) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhere is New York?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_prompt((SYSTEM, USER), info).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")


def test_template_blocks_are_trimmed_and_tokens_passed() -> None:
    template = (
        "{{ bos_token }}\n{% for m in messages %}\n  {% if m['role'] == 'user' %}\n"
        "U:{{ m['content'] | tojson }}\n"
        "  {% endif %}\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}{{ eos_token }}"
    )
    info = TemplateInfo(template=template, bos_token="<s>", eos_token="</s>")
    assert render_prompt((SYSTEM, Message("user", "café")), info) == '<s>\nU:"café"\nA:</s>'


def test_a_template_that_refuses_the_conversation_is_a_usage_error() -> None:
    refuse = "{{ raise_exception('System role not supported') }}"
    template = "{% if messages[0]['role'] == 'system' %}" + refuse + "{% endif %}"
    with pytest.raises(ChatTemplateError, match="System role not supported") as caught:
        render_prompt((SYSTEM, USER), TemplateInfo(template=template))
    assert caught.value.exit_code == 2


def test_a_broken_template_is_reported() -> None:
    with pytest.raises(ChatTemplateError, match="not valid Jinja"):
        render_prompt((USER,), TemplateInfo(template="{% for m in messages %}"))


def test_without_a_template_llama_models_get_llama_2_and_others_chatml() -> None:
    assert render_prompt((USER,), TemplateInfo(None, "<s>", "</s>", "llama")) == llama2_prompt((USER,))
    assert render_prompt((USER,), TemplateInfo(None, "", "", "gpt2")) == chatml_prompt((USER,))


# Tokens, with llama.cpp's own tokenizer


def _vocab(path: Path) -> NativeModel:
    pytest.importorskip("llama_cpp")
    from wai.llama.native import NativeModel

    return NativeModel.load(path, gpu_layers=0, vocab_only=True)


@pytest.mark.parametrize(
    "template",
    [CHAT_TEMPLATE, CHAT_TEMPLATE.replace("{{ bos_token }}", ""), None],
    ids=["template-writes-bos", "template-without-bos", "llama-2-format"],
)
def test_exactly_one_bos_starts_the_prompt(tmp_path: Path, template: str | None) -> None:
    model = build_tiny_llama(tmp_path / "m.gguf", ftype="f16", script="Hi", chat_template=template)
    tokens = tokenize_chat(_vocab(model.path), (SYSTEM, USER, REPLY, FOLLOW))
    assert tokens[0] == BOS
    assert tokens[1] != BOS
    if template is None:  # Llama-2 turns each start with <s>: the first one is the BOS
        assert tokens.count(BOS) == 2


def test_special_tokens_of_the_template_are_single_tokens(tmp_path: Path) -> None:
    model = build_tiny_llama(tmp_path / "m.gguf", ftype="f16", script="Hi")
    tokens = tokenize_chat(_vocab(model.path), (USER,))
    # llama-cpp-python's own tokenizer, as an outside reference
    llama_cpp = pytest.importorskip("llama_cpp")
    reference = llama_cpp.Llama(model_path=str(model.path), vocab_only=True, verbose=False)
    assistant = reference.tokenize(b"<|assistant|>", add_bos=False, special=True)
    assert len(assistant) == 1 and tokens[-1] == assistant[0]


@pytest.mark.e2e
def test_the_vocabulary_and_the_loaded_model_tokenize_alike(tmp_path: Path) -> None:
    from wai.llama.native import NativeModel

    model = build_tiny_llama(tmp_path / "m.gguf", ftype="q8_0", script="Hi")
    loaded = NativeModel.load(model.path, gpu_layers=0)
    try:
        conversation = (SYSTEM, USER, REPLY, Message("user", "日本 🎉 and more"))
        assert tokenize_chat(loaded, conversation) == tokenize_chat(_vocab(model.path), conversation)
    finally:
        loaded.close()

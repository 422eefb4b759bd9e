"""The prompt Workers AI builds from a `messages` body, per model family, for counting tokens.

Workers AI applies each model's chat template on the server; the client never sees the result.
The renderings here are our best knowledge of what the server applies: the text its tokenizer
reads, special tokens written as their text; tokenizing it with special tokens parsed (and BOS
added where `RemoteFormat.add_bos` says) gives the prompt's tokens:

- llama-2: the Llama-2 chat format as Cloudflare's JavaScript SDK applied it (see
  docs/workers-ai-protocol.md): `[INST] <<SYS>>\\nS\\n<</SYS>>\\n\\nU [/INST]` for the system
  message and first user message, `<s>[INST] U [/INST]` for any other user message, ` A</s>` for
  an assistant message; the tokenizer adds BOS in front (so a conversation without a system
  prompt starts with two BOS tokens: one added, one written, as the SDK's text implies; if the
  server dedupes them we count one token high, never low). llama.cpp's SentencePiece tokenizer
  puts a space before the text after every special token, as Meta's reference code did by
  encoding each turn on its own.
- llama-3: Meta's Llama-3 instruct template, `<|begin_of_text|>` then for each message
  `<|start_header_id|>ROLE<|end_header_id|>\\n\\nCONTENT<|eot_id|>` (content trimmed), then the
  assistant's header. Llama 3.1's own template also puts a knowledge-date preamble in the system
  message; whether Workers AI adds it is not known, so it is not counted.
- qwen2: ChatML, `<|im_start|>ROLE\\nCONTENT<|im_end|>\\n` per message then
  `<|im_start|>assistant\\n`, with Qwen2.5's default system message when none is given. A
  model of this family with a terser template (DeepSeek's R1 distillations use one special
  token per turn) is counted a few tokens high per message, never low.

A family missing here has no known remote template; its counts are estimates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wai.conversation import Message

Renderer = Callable[[Sequence[Message]], str]

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def render_llama2(messages: Sequence[Message]) -> str:
    system = next((m.content for m in messages if m.role == "system"), None)
    parts: list[str] = []
    first_user = True
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "user":
            if first_user and system is not None:
                parts.append(f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{message.content} [/INST]")
            else:
                parts.append(f"<s>[INST] {message.content} [/INST]")
            first_user = False
        else:
            parts.append(f" {message.content}</s>")
    if first_user and system is not None:  # a system prompt and no user message yet
        parts.insert(0, f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n [/INST]")
    return "".join(parts)


def render_llama3(messages: Sequence[Message]) -> str:
    parts = ["<|begin_of_text|>"]
    for message in messages:
        parts.append(
            f"<|start_header_id|>{message.role}<|end_header_id|>\n\n{message.content.strip()}<|eot_id|>"
        )
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def render_chatml(messages: Sequence[Message]) -> str:
    parts: list[str] = []
    if not messages or messages[0].role != "system":
        parts.append(f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n")
    for message in messages:
        parts.append(f"<|im_start|>{message.role}\n{message.content}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class RemoteFormat:
    """How one family's prompt is built: the text, and whether the tokenizer adds BOS to it."""

    render: Renderer
    add_bos: bool


FORMATS: dict[str, RemoteFormat] = {
    "llama-2": RemoteFormat(render_llama2, add_bos=True),
    "llama-3": RemoteFormat(render_llama3, add_bos=False),  # <|begin_of_text|> is in the text
    "qwen2": RemoteFormat(render_chatml, add_bos=False),  # Qwen2 has no BOS
}


def format_for(family: str | None) -> RemoteFormat | None:
    """The remote prompt format of `family`, None when unknown."""
    return FORMATS.get(family or "")

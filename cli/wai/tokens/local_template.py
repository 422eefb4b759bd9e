"""The exact prompt a local model receives for a conversation: its text, and its tokens.

The GGUF's own chat template (`tokenizer.chat_template`, a Jinja template written for Hugging
Face transformers) is rendered the way llama-cpp-python and transformers render it: sandboxed,
`trim_blocks` and `lstrip_blocks`, with `bos_token`, `eos_token` and `add_generation_prompt`.
A model without one gets the Llama-2 chat format if it is a llama model, else ChatML (llama.cpp's
own fallback). The local backend and the exact token counter both call `tokenize_chat`, so the
count the budget uses is the prompt that is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from wai.conversation import Message
from wai.errors import ChatTemplateError

if TYPE_CHECKING:
    import jinja2

    from wai.llama.native import NativeModel


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What rendering a prompt needs to know about a model."""

    template: str | None
    bos_token: str = ""
    eos_token: str = ""
    architecture: str | None = None

    @property
    def format_name(self) -> str:
        if self.template:
            return "gguf"
        return "llama-2" if self.architecture == "llama" else "chatml"


def render_prompt(messages: Sequence[Message], info: TemplateInfo) -> str:
    """The prompt text, ending where the model's reply begins."""
    if info.template:
        return _render_jinja(info.template, messages, info.bos_token, info.eos_token)
    if info.architecture == "llama":
        return llama2_prompt(messages, bos=info.bos_token or "<s>", eos=info.eos_token or "</s>")
    return chatml_prompt(messages)


def llama2_prompt(messages: Sequence[Message], *, bos: str = "<s>", eos: str = "</s>") -> str:
    """Meta's Llama-2 chat format, as Workers AI's SDK applies it.

    `<s>[INST] <<SYS>>\\nS\\n<</SYS>>\\n\\nU [/INST] A</s><s>[INST] U2 [/INST]`

    The system prompt goes inside the first instruction. A system message later in the
    conversation has no place in this format; it is sent as an instruction of its own.
    """
    rest = list(messages)
    system = rest.pop(0).content if rest and rest[0].role == "system" else None
    parts: list[str] = []
    for message in rest:
        if message.role == "assistant":
            parts.append(f" {message.content}{eos}")
            continue
        content = message.content
        if system is not None:
            content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
            system = None
        parts.append(f"{bos}[INST] {content} [/INST]")
    if system is not None:
        parts.append(f"{bos}[INST] <<SYS>>\n{system}\n<</SYS>>\n\n [/INST]")
    return "".join(parts)


def chatml_prompt(messages: Sequence[Message]) -> str:
    body = "".join(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"


def template_info(model: NativeModel) -> TemplateInfo:
    return TemplateInfo(
        template=model.chat_template(),
        bos_token=model.token_text(model.bos()),
        eos_token=model.token_text(model.eos()),
        architecture=model.meta("general.architecture"),
    )


def tokenize_chat(model: NativeModel, messages: Sequence[Message]) -> list[int]:
    """The tokens of the prompt for `messages`, exactly as the local backend sends them.

    `model` is the backend's loaded model or a vocabulary-only one. Control tokens come from the
    template alone: a message's text is plain text, whatever it spells. BOS comes first when the
    vocabulary asks for it, once: a template that writes the BOS text itself does not get a
    second one.
    """
    from wai.tokens.chat_tokens import prompt_tokens

    info = _cached_info(model)
    tokens = prompt_tokens(model, messages, lambda convo: render_prompt(convo, info))
    bos = model.bos()
    if model.adds_bos() and bos >= 0 and (not tokens or tokens[0] != bos):
        tokens.insert(0, bos)
    return tokens


def _cached_info(model: NativeModel) -> TemplateInfo:
    # The budget counts a prompt many times while it trims one; the template does not change.
    info = model.cache.get("template_info")
    if not isinstance(info, TemplateInfo):
        info = model.cache["template_info"] = template_info(model)
    return info


def _render_jinja(template: str, messages: Sequence[Message], bos: str, eos: str) -> str:
    import jinja2

    def raise_exception(message: str) -> None:
        raise ChatTemplateError(f"the model's chat template rejects this conversation: {message}")

    try:
        rendered = _compile(template).render(
            messages=[m.as_dict() for m in messages],
            bos_token=bos,
            eos_token=eos,
            add_generation_prompt=True,
            raise_exception=raise_exception,
            strftime_now=lambda fmt: datetime.now().strftime(fmt),
        )
    except ChatTemplateError:
        raise
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the model's chat template failed: {exc}") from None
    except Exception as exc:  # a template is code from the file: any error of its own is the file's
        raise ChatTemplateError(f"the model's chat template failed: {type(exc).__name__}: {exc}") from None
    try:
        rendered.encode("utf-8")
    except UnicodeEncodeError as exc:  # the messages were checked: the template wrote it ("\ud800")
        raise ChatTemplateError(
            f"the model's chat template wrote text that is not valid Unicode (a lone surrogate at "
            f"character {exc.start})"
        ) from None
    return rendered


_MAX_POWER = 4096  # far beyond what a chat template computes, far below a minute of arithmetic


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class TemplateSandbox(ImmutableSandboxedEnvironment):
        """Jinja's sandbox, with powers bounded: `{{ 7 ** 999999999 }}` would compute for minutes."""

        intercepted_binops = frozenset(["**"])

        def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > _MAX_POWER:
                raise ChatTemplateError(
                    f"the model's chat template failed: a power of {right} (at most {_MAX_POWER})"
                )
            return super().call_binop(context, operator, left, right)

    env = TemplateSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"the model's chat template is not valid Jinja: {exc}") from None


def _tojson(
    value: object, ensure_ascii: bool = False, indent: int | None = None, sort_keys: bool = False
) -> str:
    # transformers renders tojson without escaping non-ASCII text, unlike Jinja's own filter.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=sort_keys)

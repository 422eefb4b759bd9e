"""What llama.cpp reads of a request, alone or decoded beside others: its prompt's tokens and the
grammar its schema holds the reply to."""

from __future__ import annotations

from wai.backends.request import Request
from wai.errors import BackendError
from wai.llama import native
from wai.schema.grammar import gbnf
from wai.tokens.counters import raw_prompt_tokens
from wai.tokens.local_template import tokenize_chat


def prompt_tokens(model: native.NativeModel, request: Request, *, template_of: str = "") -> list[int]:
    """The prompt as the model reads it: the raw text, or the conversation in the chat template.
    `template_of` names the file in the message when the template makes nothing."""
    prompt = (
        raw_prompt_tokens(model, request.messages[-1].content)
        if request.raw
        else tokenize_chat(model, request.messages)
    )
    if not prompt:
        where = f" of {template_of}" if template_of else ""
        raise BackendError(f"the chat template{where} made an empty prompt")
    return prompt


def grammar_of(request: Request) -> str | None:
    """The GBNF grammar of the request's schema, None without one; a schema the grammar cannot
    hold is refused by name."""
    if request.schema is None:
        return None
    return gbnf(request.schema.document, option=request.schema.option)

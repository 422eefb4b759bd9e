"""Checks of what a request costs, for the test server that receives requests: not product code.

`counter_for` is a backend's counter, by the backend's name; `count_body` recounts a Workers AI
request body as wai counted it for sending; `cap_violations` names every window a request of
that size breaks.
"""

from __future__ import annotations

from collections.abc import Mapping

from wai.backends.base import BackendName
from wai.backends.registry import backend_named
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.tokens.counters import RawCounter, TokenCounter


def counter_for(model: ModelSpec, backend: BackendName) -> TokenCounter:
    """The counter a run of `model` on `backend` plans with, built without the backend."""
    return backend_named(backend).counter(model)


def count_body(model: ModelSpec, body: Mapping[str, object]) -> int:
    """The prompt tokens of a Workers AI request body (`messages` or `prompt`), counted as for sending.

    For a server that recounts what it receives: a `prompt` is counted as one user message
    (the server templates it too), or as it is (plus BOS) when the body says `raw`.
    """
    counter = counter_for(model, "remote")
    messages = body.get("messages")
    if isinstance(messages, list):
        convo = tuple(Message(m["role"], str(m["content"])) for m in messages if isinstance(m, dict))
        return counter.count_prompt(convo)
    prompt = str(body.get("prompt", ""))
    if body.get("raw"):
        return RawCounter(counter).count_raw(prompt)
    return counter.count_prompt((Message("user", prompt),))


def cap_violations(model: ModelSpec, prompt_tokens: int, max_tokens: int | None) -> list[str]:
    """Every window a request of this size breaks; [] when it respects them all.

    For whoever receives requests (a test server recounting each body, a backend's own check):
    a request without `max_tokens` breaks the rule that it is always sent.
    """
    problems: list[str] = []
    if prompt_tokens > model.context_window:
        problems.append(f"prompt {prompt_tokens} > context_window {model.context_window}")
    if max_tokens is None:
        problems.append("no max_tokens (the server would default to 256)")
        return problems
    if max_tokens < 1:
        problems.append(f"max_tokens {max_tokens} < 1")
    if max_tokens > model.max_output:
        problems.append(f"max_tokens {max_tokens} > max_output {model.max_output}")
    if prompt_tokens + max_tokens > model.total_context:
        problems.append(
            f"prompt {prompt_tokens} + max_tokens {max_tokens} > total_context {model.total_context}"
        )
    return problems

"""A model's context as an OpenAI-compatible server tells it: in its model list (vLLM's
`max_model_len`, wai serve's windows), llama-server's GET /props, ollama's POST /api/show."""

from __future__ import annotations

import re
from typing import Any

from wai.backends.openai.client import Answer, ProviderClient
from wai.errors import BackendError
from wai.store.catalogs import check_parts, tokens_figure

_NUM_CTX = re.compile(r"^\s*num_ctx\s+(\d+)", re.M)
# What ollama runs a model with when its Modelfile sets no num_ctx; it cuts longer prompts silently.
OLLAMA_DEFAULT_CTX = 4096


def listed_context(entry: dict[str, Any]) -> tuple[int, str, tuple[str, ...]] | None:
    """A model's context as GET /models lists it, the engine that lists it so, and the windows
    beyond the context it gives (as capabilities `context_window:N`, `max_output:N`): vLLM's (and
    SGLang's) `max_model_len`; wai serve's `context_window`, `max_output` and `total_context`.
    ImplausibleFigure for a figure no model has (a 41-digit context, an output over the whole)."""
    length = tokens_figure("max_model_len", entry.get("max_model_len"))
    if length is not None:
        return length, "vllm", ()
    total, window, most = (
        tokens_figure(key, entry.get(key)) for key in ("total_context", "context_window", "max_output")
    )
    if total is not None and window is not None and most is not None:
        check_parts(total, {"context_window": window, "max_output": most})
        return total, "wai-serve", (f"context_window:{window}", f"max_output:{most}")
    return None


def server_context(
    client: ProviderClient, model: str, listed: list[dict[str, Any]] | None = None
) -> tuple[int | None, str | None]:
    """A model's context (prompt and reply together) as the server tells it, and the engine that
    told: vLLM's `max_model_len` in GET /models (`listed`, when already read), llama-server's
    `n_ctx` in GET /props, ollama's num_ctx (else its default) from POST /api/show; (None, None)
    when the server tells none."""
    from wai.backends.openai.client import listed_models

    if listed is None:
        try:
            listed = listed_models(client)
        except BackendError:  # a refused key (ConfigError) stops everything
            listed = []
    for entry in listed:
        found = listed_context(entry) if entry["id"] == model else None
        if found is not None:
            return found[0], found[1]
    props = _facility(client, "GET", "/props")
    if props is not None and props.status == 200 and isinstance(props.data, dict):
        settings = props.data.get("default_generation_settings")
        n_ctx = props.data.get("n_ctx")
        if not isinstance(n_ctx, int) and isinstance(settings, dict):
            n_ctx = settings.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx > 0:
            return n_ctx, "llama-server"
    return ollama_context(client, model)


def ollama_context(client: ProviderClient, model: str) -> tuple[int | None, str | None]:
    show = _facility(client, "POST", "/api/show", {"model": model})
    if show is None or show.status != 200 or not isinstance(show.data, dict):
        return None, None
    parameters = show.data.get("parameters")
    found = _NUM_CTX.search(parameters) if isinstance(parameters, str) else None
    if found:
        return int(found.group(1)), "ollama"
    info = show.data.get("model_info")
    trained = None
    if isinstance(info, dict):
        trained = next(
            (v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)), None
        )
    return min(trained or OLLAMA_DEFAULT_CTX, OLLAMA_DEFAULT_CTX), "ollama"


def _facility(client: ProviderClient, method: str, path: str, body: object = None) -> Answer | None:
    """A route only some engines have: None when it does not answer in time (no such facility)."""
    try:
        return client.call(method, f"{client.provider.root}{path}", body)
    except BackendError:
        return None

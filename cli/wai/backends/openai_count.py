"""Counting a prompt with the server's own tokenizer, and reading a model's context from the server.

- vLLM (and SGLang where it offers it): `POST /tokenize` with the chat `messages` and
  `add_generation_prompt` answers `count` (the templated prompt's tokens) and `max_model_len`;
- llama-server: `POST /apply-template` with the messages answers the templated `prompt`, and
  `POST /tokenize` with it (`add_special`, `parse_special`, as its chat route tokenizes) its tokens;
- any other server (ollama, Workers AI's /v1, OpenAI): the documented estimate, marked `~`.

`tokenizer = "auto"` finds out with the first count: one POST /tokenize with the messages tells
vLLM (a `count`) from llama-server (only `tokens`) from a server with none (an error status).
Counts are kept per conversation (the same messages are never counted twice), which is what
`wai chat` asks turn after turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from wai.backends.openai_http import ProviderClient
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.errors import BackendError
from wai.providers import TokenizerKind
from wai.windows.counters import EstimatedCounter

ENGINE_PREFIX = "engine:"
_NUM_CTX = re.compile(r"^\s*num_ctx\s+(\d+)", re.M)
# What ollama runs a model with when its Modelfile sets no num_ctx; it cuts longer prompts silently.
OLLAMA_DEFAULT_CTX = 4096


def engine_of(spec: ModelSpec) -> str | None:
    """The engine a refresh found behind a provider model ("vllm", "llama-server", "ollama")."""
    for capability in spec.capabilities:
        if capability.startswith(ENGINE_PREFIX):
            return capability[len(ENGINE_PREFIX) :]
    return None


class ServerCounter:
    """A TokenCounter that asks the server; `exact` and `source` say what it could do."""

    def __init__(self, client: ProviderClient, spec: ModelSpec, kind: TokenizerKind) -> None:
        self.client = client
        self.model = spec.served_name
        if kind == "auto":
            engine = engine_of(spec)
            kind = "vllm" if engine == "vllm" else "llama-server" if engine == "llama-server" else "auto"
            if engine == "ollama":
                kind = "none"
        self.kind: TokenizerKind = kind
        self._estimate = EstimatedCounter(f"{client.provider.name} offers no tokenizer")
        self.exact = kind != "none"
        self.source = self._describe()
        self.max_model_len: int | None = None
        self._counts: dict[tuple[Message, ...], int] = {}
        self._texts: dict[tuple[Message, ...], str] = {}
        self.requests = 0  # count requests sent, for --debug and the benchmark

    def _describe(self) -> str:
        name = self.client.provider.name
        if self.kind == "vllm":
            return f"{name}'s own tokenizer (POST /tokenize)"
        if self.kind == "llama-server":
            return f"{name}'s own tokenizer (POST /apply-template, /tokenize)"
        if self.kind == "none":
            return self._estimate.source
        return f"{name}'s own tokenizer, if it has one"

    def _settle(self, kind: TokenizerKind, why: str | None = None) -> None:
        self.kind = kind
        if kind == "none" and why:
            self._estimate = EstimatedCounter(f"{self.client.provider.name} offers no tokenizer: {why}")
        self.exact = kind != "none"
        self.source = self._describe()

    # -- the TokenCounter protocol --------------------------------------------------------------

    def count_prompt(self, messages: Sequence[Message]) -> int:
        key = tuple(messages)
        if key in self._counts:
            return self._counts[key]
        if self.kind == "auto":
            count = self._probe(key)
        elif self.kind == "vllm":
            count = self._vllm_count(key)
        elif self.kind == "llama-server":
            count = self._llama_count(key)
        else:
            count = self._estimate.count_prompt(key)
        if self.kind == "none":
            count = self._estimate.count_prompt(key)
        self._counts[key] = count
        return count

    def count_text(self, text: str) -> int:
        if self.kind == "vllm":
            data = self._post("/tokenize", {"model": self.model, "prompt": text, "add_special_tokens": False})
            return _int(data, "count")
        if self.kind == "llama-server":
            data = self._post("/tokenize", {"content": text, "add_special": False})
            return len(_list(data, "tokens"))
        return self._estimate.count_text(text)

    def cut_points(self, text: str) -> Sequence[int]:
        return range(len(text) + 1)  # every character: each cut is still counted by the server

    def prompt_text(self, messages: Sequence[Message]) -> str | None:
        key = tuple(messages)
        if self.kind == "llama-server" and key not in self._texts:
            self._llama_count(key)
        return self._texts.get(key)

    # -- the engines ----------------------------------------------------------------------------

    def _probe(self, key: tuple[Message, ...]) -> int:
        answer = self.client.call("POST", f"{self.client.provider.root}/tokenize", self._vllm_body(key))
        self.requests += 1
        data = answer.data
        if answer.status == 200 and isinstance(data, dict) and isinstance(data.get("count"), int):
            self._settle("vllm")
            self._vllm_facts(data)
            return int(data["count"])
        if answer.status == 200 and isinstance(data, dict) and isinstance(data.get("tokens"), list):
            self._settle("llama-server")
            return self._llama_count(key)
        self._settle("none", f"POST /tokenize answered HTTP {answer.status}")
        return self._estimate.count_prompt(key)

    def _vllm_body(self, key: tuple[Message, ...]) -> dict[str, object]:
        return {"model": self.model, "messages": [m.as_dict() for m in key], "add_generation_prompt": True}

    def _vllm_count(self, key: tuple[Message, ...]) -> int:
        data = self._post("/tokenize", self._vllm_body(key))
        self._vllm_facts(data)
        return _int(data, "count")

    def _vllm_facts(self, data: dict[str, Any]) -> None:
        length = data.get("max_model_len")
        if isinstance(length, int) and not isinstance(length, bool) and length > 0:
            self.max_model_len = length

    def _llama_count(self, key: tuple[Message, ...]) -> int:
        templated = self._post("/apply-template", {"messages": [m.as_dict() for m in key]})
        prompt = templated.get("prompt")
        if not isinstance(prompt, str):
            raise self._unreadable("/apply-template", "prompt")
        self._texts[key] = prompt
        data = self._post("/tokenize", {"content": prompt, "add_special": True, "parse_special": True})
        return len(_list(data, "tokens"))

    def _post(self, path: str, body: dict[str, object]) -> dict[str, Any]:
        answer = self.client.call("POST", f"{self.client.provider.root}{path}", body)
        self.requests += 1
        if answer.status >= 300 or not isinstance(answer.data, dict):
            from wai.backends.workers_ai_errors import parse_error

            said = parse_error(answer.status, answer.raw, self.client.scrub).where()
            raise BackendError(
                f"{self.client.provider.name} could not count the prompt (POST {path}: {said})",
                hint=f'tokenizer = "none" in {self.client.provider.where} sends it counted by estimate',
            )
        return answer.data

    def _unreadable(self, path: str, key: str) -> BackendError:
        return BackendError(f"{self.client.provider.name} answered POST {path} without '{key}'")


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BackendError(f"the server answered POST /tokenize without '{key}'")
    return value


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise BackendError(f"the server answered POST /tokenize without '{key}'")
    return value


def server_context(
    client: ProviderClient, model: str, listed: list[dict[str, Any]] | None = None
) -> tuple[int | None, str | None]:
    """A model's context (prompt and reply together) as the server tells it, and the engine that
    told: vLLM's `max_model_len` in GET /models (`listed`, when already read), llama-server's
    `n_ctx` in GET /props, ollama's num_ctx (else its default) from POST /api/show; (None, None)
    when the server tells none."""
    from wai.backends.openai_http import listed_models
    from wai.errors import WaiError

    if listed is None:
        try:
            listed = listed_models(client)
        except WaiError:
            listed = []
    for entry in listed:
        length = entry.get("max_model_len")
        if entry["id"] == model and isinstance(length, int) and length > 0:
            return length, "vllm"
    props = client.call("GET", f"{client.provider.root}/props")
    if props.status == 200 and isinstance(props.data, dict):
        settings = props.data.get("default_generation_settings")
        n_ctx = props.data.get("n_ctx")
        if not isinstance(n_ctx, int) and isinstance(settings, dict):
            n_ctx = settings.get("n_ctx")
        if isinstance(n_ctx, int) and n_ctx > 0:
            return n_ctx, "llama-server"
    return ollama_context(client, model)


def ollama_context(client: ProviderClient, model: str) -> tuple[int | None, str | None]:
    show = client.call("POST", f"{client.provider.root}/api/show", {"model": model})
    if show.status != 200 or not isinstance(show.data, dict):
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

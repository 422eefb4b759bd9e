"""Counting a prompt with the server's own tokenizer (a model's context, as the server tells it, is
read in context.py).

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

from collections.abc import Sequence
from typing import Any

from wai.backends.openai.client import ProviderClient
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.errors import BackendError
from wai.providers import TokenizerKind
from wai.tokens.counters import EstimatedCounter
from wai.wording import counted

ENGINE_PREFIX = "engine:"
# Engines that cut a prompt over the context without an error, instead of refusing it.
TRUNCATE_SILENTLY = ("ollama",)
# What a server answers on a route it does not have (or a gateway that lets only the API through):
# no such facility, never a refused key.
NO_SUCH_ROUTE = (401, 403, 404, 405)


def engine_of(spec: ModelSpec) -> str | None:
    """The engine a refresh found behind a provider model ("vllm", "llama-server", "ollama")."""
    return spec.engine


class _NoRoute(BackendError):
    """A count route that is not there or not open to this client (NO_SUCH_ROUTE): no tokenizer."""

    def __init__(self, message: str, why: str, hint: str | None) -> None:
        super().__init__(message, hint=hint)
        self.why = why


class ServerCounter:
    """A TokenCounter that asks the server; `exact` and `source` say what it could do."""

    def __init__(self, client: ProviderClient, spec: ModelSpec, kind: TokenizerKind) -> None:
        self.client = client
        self.model = spec.served_name
        self.chosen = kind  # what config.toml says; "auto" falls back to the estimate on failure
        engine = engine_of(spec)
        # A prompt over its context is cut, not refused: an estimate close to the window warns.
        self.truncates_silently = engine if engine in TRUNCATE_SILENTLY else None
        if kind == "auto":
            kind = "vllm" if engine == "vllm" else "llama-server" if engine == "llama-server" else "auto"
            if engine in ("ollama", "wai-serve"):  # neither has a tokenizer route to ask
                kind = "none"
        self.kind: TokenizerKind = kind
        self._estimate = EstimatedCounter(f"{client.provider.name} offers no tokenizer")
        self.exact = kind != "none"
        self.source = self._describe()
        self.max_model_len: int | None = None
        self._counts: dict[tuple[Message, ...], int] = {}
        self._texts: dict[tuple[Message, ...], str] = {}
        self.requests = 0  # count requests sent, for --debug and the benchmark
        self.warnings: list[str] = []
        self._told_stale = False

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
        elif self.kind in ("vllm", "llama-server"):
            try:
                count = self._vllm_count(key) if self.kind == "vllm" else self._llama_count(key)
            except _NoRoute as missing:
                if self.chosen != "auto":
                    raise
                # The engine was known from its listing, but the route is not there (a gateway that
                # lets only the API through): no tokenizer, as when the first count finds out.
                self._settle("none", missing.why)
                count = self._estimate.count_prompt(key)
            except BackendError as error:
                if self.chosen != "auto":
                    raise
                count = self._fallback(key, error.message)
        else:
            count = self._estimate.count_prompt(key)
        if self.kind == "none":
            count = self._estimate.count_prompt(key)
        self._counts[key] = count
        return count

    def count_text(self, text: str) -> int:
        if self.kind == "vllm":
            body = {"model": self.model, "prompt": text, "add_special_tokens": False}
            return self._count_in(self._post("/tokenize", body), "/tokenize")
        if self.kind == "llama-server":
            data = self._post("/tokenize", {"content": text, "add_special": False})
            return len(self._list(data, "/tokenize", "tokens"))
        return self._estimate.count_text(text)

    def cut_points(self, text: str) -> Sequence[int]:
        return range(len(text) + 1)  # every character: each cut is still counted by the server

    def prompt_text(self, messages: Sequence[Message]) -> str | None:
        key = tuple(messages)
        if self.kind == "llama-server" and key not in self._texts:
            self._llama_count(key)
        return self._texts.get(key)

    def told_windows(self, model: ModelSpec) -> tuple[ModelSpec, str | None] | None:
        """`model` held to the context the server told with its count (vLLM's `max_model_len`).

        Where wai only assumed the windows (the server lists none), the told context replaces the
        assumption, without a warning, and is kept for later runs as a first use keeps a listed
        one. Otherwise it holds the model when it is less than what wai had: a stored refresh or
        an entry can be stale, and the server's own figure is the one it refuses by; the warning
        comes once per counter. None where the count told nothing that changes the plan."""
        from dataclasses import replace

        from wai.backends.openai.learned import windows_assumed
        from wai.store.catalogs import output_window

        told = self.max_model_len
        if told is None or (told >= model.total_context and not windows_assumed(model)):
            return None
        if windows_assumed(model):
            return self._learned(model, told), None
        held = replace(
            model,
            context_window=min(model.context_window, told),
            max_output=min(model.max_output, output_window(told, reasoning=model.reasoning)),
            total_context=told,
        )
        warning = None
        if not self._told_stale:
            self._told_stale = True
            warning = (
                f"{self.client.provider.name} says {self.model}'s context is {counted(told, 'token')}, "
                f"not the {model.total_context} wai had from {model.source or 'its catalog'}: "
                f"planned with {told}; "
                f"{self._remedy(model)}"
            )
        return held, warning

    def _learned(self, model: ModelSpec, told: int) -> ModelSpec:
        """The assumed windows replaced by the context the server told, kept in the provider's store."""
        from dataclasses import replace

        from wai.backends.openai.learned import remember, store_name
        from wai.store.catalogs import ModelFacts, output_window, store_path

        provider = self.client.provider
        engine = engine_of(model) or (self.kind if self.kind in ("vllm", "llama-server") else None)
        remember(
            provider,
            ModelFacts(
                id=self.model, window=told, capabilities=(f"{ENGINE_PREFIX}{engine}",) if engine else ()
            ),
        )
        return replace(
            model,
            context_window=told,
            max_output=output_window(told, reasoning=model.reasoning),
            total_context=told,
            source=str(store_path(store_name(provider))),
            assumed_windows=None,  # told now
        )

    def _remedy(self, model: ModelSpec) -> str:
        """Where the stale windows can be put right: a refresh for a stored listing, else the
        models.toml that holds the entry, else the user's models.toml (never a URL)."""
        from pathlib import Path

        from wai.catalog.entries import user_catalog_path
        from wai.providers import STORE_PREFIX

        if model.source.endswith(f"{STORE_PREFIX}{self.client.provider.name}.json"):
            return "`wai models --refresh` reads the server's figures again"
        entry = f'[models."{model.id}"]'
        if model.source.endswith(".toml") and Path(model.source).is_file():
            return f"lower context_window and max_output under {entry} there"
        return f"set context_window and max_output under {entry} in {user_catalog_path()}"

    def drain_warnings(self) -> list[str]:
        """What counting found worth a warning since the last call (each said once)."""
        warnings, self.warnings = self.warnings, []
        return warnings

    # -- the engines ----------------------------------------------------------------------------

    def _probe(self, key: tuple[Message, ...]) -> int:
        """The first count of `tokenizer = "auto"`: it finds out which tokenizer there is. A server
        whose /tokenize is missing or refused has none; one whose /tokenize answers badly is
        counted by estimate, with a warning, rather than costing the turn."""
        try:
            answer = self.client.call("POST", f"{self.client.provider.root}/tokenize", self._vllm_body(key))
        except BackendError as error:
            return self._fallback(
                key, f"{self.client.provider.name} could not count the prompt: {error.message}"
            )
        self.requests += 1
        data = answer.data
        if answer.status in NO_SUCH_ROUTE:
            self._settle("none", f"POST /tokenize answered HTTP {answer.status}")
            return self._estimate.count_prompt(key)
        if answer.status == 200 and isinstance(data, dict) and "count" in data:
            try:
                count = self._count_in(data, "/tokenize")
            except BackendError as error:
                return self._fallback(key, error.message)
            self._settle("vllm")
            self._vllm_facts(data)
            return count
        if answer.status == 200 and isinstance(data, dict) and isinstance(data.get("tokens"), list):
            self._settle("llama-server")
            try:
                return self._llama_count(key)
            except BackendError as error:
                return self._fallback(key, error.message)
        from wai.backends.http.errors import parse_error

        said = parse_error(answer.status, answer.raw, self.client.scrub).where()
        why = (
            f"its POST /tokenize answered {said}"
            if answer.status != 200
            else ("its POST /tokenize answered without a count wai can read")
        )
        return self._fallback(key, f"{self.client.provider.name} could not count the prompt: {why}")

    def _fallback(self, key: tuple[Message, ...], why: str) -> int:
        self._settle("none", "its tokenizer failed")
        self.warnings.append(
            f'{why}; counted by estimate (~) instead (tokenizer = "none" in {self.client.provider.where} '
            "skips the request)"
        )
        return self._estimate.count_prompt(key)

    def _vllm_body(self, key: tuple[Message, ...]) -> dict[str, object]:
        return {"model": self.model, "messages": [m.as_dict() for m in key], "add_generation_prompt": True}

    def _vllm_count(self, key: tuple[Message, ...]) -> int:
        data = self._post("/tokenize", self._vllm_body(key))
        count = self._count_in(data, "/tokenize")
        self._vllm_facts(data)
        return count

    def _vllm_facts(self, data: dict[str, Any]) -> None:
        length = data.get("max_model_len")
        if isinstance(length, int) and not isinstance(length, bool) and length > 0:
            self.max_model_len = length

    def _llama_count(self, key: tuple[Message, ...]) -> int:
        templated = self._post("/apply-template", {"messages": [m.as_dict() for m in key]})
        prompt = templated.get("prompt")
        if not isinstance(prompt, str):
            raise self._cannot_count("/apply-template", "its answer has no 'prompt'")
        data = self._post("/tokenize", {"content": prompt, "add_special": True, "parse_special": True})
        count = len(self._list(data, "/tokenize", "tokens"))
        self._texts[key] = prompt
        return count

    def _post(self, path: str, body: dict[str, object]) -> dict[str, Any]:
        try:
            answer = self.client.call("POST", f"{self.client.provider.root}{path}", body)
        except BackendError as error:  # unreachable, or too slow: the error says which
            raise self._cannot_count(path, error.message, said_whole=True) from None
        self.requests += 1
        if answer.status >= 300 or not isinstance(answer.data, dict):
            from wai.backends.http.errors import parse_error

            said = parse_error(answer.status, answer.raw, self.client.scrub).where()
            failure = self._cannot_count(path, said)
            if answer.status in NO_SUCH_ROUTE:
                raise _NoRoute(failure.message, f"POST {path} answered HTTP {answer.status}", failure.hint)
            raise failure
        return answer.data

    def _cannot_count(self, path: str, why: str, *, said_whole: bool = False) -> BackendError:
        provider = self.client.provider
        what = f": {why}" if said_whole else f" (POST {path}: {why})"
        return BackendError(
            f"{provider.name} could not count the prompt{what}",
            hint=f'tokenizer = "none" in {provider.where} sends it counted by estimate',
        )

    def _count_in(self, data: dict[str, Any], path: str) -> int:
        value = data.get("count")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._cannot_count(path, f"'count' is {value!r}, not a number of tokens")
        return value

    def _list(self, data: dict[str, Any], path: str, key: str) -> list[Any]:
        value = data.get(key)
        if not isinstance(value, list):
            raise self._cannot_count(path, f"its answer has no '{key}' list")
        return value

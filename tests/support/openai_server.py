"""Loopback servers that speak the OpenAI API as vLLM and as llama-server do, for tests and benchmarks.

Both run on the Workers AI test server's machinery (real sockets, threads, scripted replies with
pauses, drops and stalls: see workers_ai_server.py) with a simulation of their own:

- `engine="vllm"`: GET /v1/models lists each model with `max_model_len`; POST /tokenize takes
  `messages` (answering `count`, `max_model_len`, `tokens`) or `prompt`;
- `engine="llama-server"`: GET /props has `n_ctx`; POST /apply-template turns `messages` into
  the templated prompt and POST /tokenize (`content`, `add_special`) tokenizes it; GET /v1/models
  lists the models without a context;
- `engine="wai-serve"`: GET /v1/models lists `context_window`, `max_output` (a quarter of the
  context) and `total_context`, as `wai serve` does; no tokenizer;
- `engine="plain"`: chat and GET /v1/models only (ollama's or Workers AI's /v1, as far as wai
  can tell).

Each counts with its own deterministic tokenizer (`tokenize`: a special marker, a word or a
punctuation mark is one token; BOS one more), the same one for /tokenize and for every chat body
it receives: a chat body whose prompt and max_tokens exceed the context is recorded in
`server.violations` (and refused as vLLM or llama-server refuse it). Chat replies stream
`token1 token2 ...` as `chat.completion.chunk`s, usage on the last chunk when the body asks
for it with `stream_options.include_usage`, then `data: [DONE]`.

    python tests/support/openai_server.py --engine vllm --port 8000
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.support.workers_ai_server import (
    Part,
    Pause,
    RecordedRequest,
    Reply,
    Simulation,
    WorkersAIServer,
    usage_dict,
)

Engine = Literal["vllm", "llama-server", "plain", "wai-serve"]
_TOKEN = re.compile(r"<\|\w+\|>|\w+|[^\w\s]")
BOS = 1


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def apply_template(messages: Sequence[Mapping[str, Any]]) -> str:
    """The chat template both engines apply: a role marker, the content, an end marker; then the
    assistant's marker (the generation prompt)."""
    parts = [f"<|{m.get('role')}|>\n{m.get('content')}<|end|>\n" for m in messages]
    return "".join(parts) + "<|assistant|>\n"


def count_messages(messages: Sequence[Mapping[str, Any]]) -> int:
    """The prompt tokens of a chat body: the templated prompt and BOS."""
    return len(tokenize(apply_template(messages))) + BOS


@dataclass(slots=True)
class OpenAISimulation(Simulation):
    engine: Engine = "vllm"
    models: Mapping[str, int] = field(default_factory=lambda: {"org/model-a": 4096})  # id -> context
    api_key: str | None = None  # when set, any other bearer gets 401
    chat_bodies: list[dict[str, Any]] = field(default_factory=list)
    counts: list[tuple[int, int]] = field(default_factory=list)  # (prompt tokens, max_tokens) per chat
    # "METHOD /path" -> what that route answers instead of the simulation (a broken tokenizer, a
    # gateway that refuses it); each request gets the same reply, or the function's.
    routes: Mapping[str, Reply | Callable[[RecordedRequest], Reply]] = field(default_factory=dict)

    def check(self, request: RecordedRequest) -> tuple[int, list[str]] | None:
        """Every chat body, counted with this server's tokenizer against the model's context."""
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return None
        try:
            body = request.json
        except ValueError:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return None
        self.chat_bodies.append(body)
        prompt = count_messages(body["messages"])
        max_tokens = body.get("max_tokens")
        self.counts.append((prompt, max_tokens if isinstance(max_tokens, int) else -1))
        context = self.models.get(str(body.get("model")), self._only_context())
        problems: list[str] = []
        if not isinstance(max_tokens, int) or max_tokens < 1:
            problems.append(f"max_tokens not sent ({max_tokens!r})")
        elif prompt + max_tokens > context:
            problems.append(
                f"{prompt} prompt tokens and max_tokens {max_tokens} exceed the context of {context}"
            )
        return prompt, problems

    def _only_context(self) -> int:
        return next(iter(self.models.values()))

    def reply(self, request: RecordedRequest, *, prompt_tokens: int | None = None) -> Reply:
        path = request.path.split("?", 1)[0]
        routed = self.routes.get(f"{request.method} {path}")
        if routed is not None:
            return routed if isinstance(routed, Reply) else routed(request)
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API key", "AuthenticationError")
        try:
            body = request.json if request.body else {}
        except ValueError:
            return _error(400, "the body is not JSON", "BadRequestError")
        if request.method == "GET" and path == "/v1/models":
            return self._models()
        if self.engine == "vllm" and request.method == "POST" and path == "/tokenize":
            return self._vllm_tokenize(body)
        if self.engine == "llama-server":
            if request.method == "GET" and path == "/props":
                return Reply.json(
                    {"default_generation_settings": {"n_ctx": self._only_context()}, "total_slots": 1}
                )
            if request.method == "POST" and path == "/apply-template":
                return Reply.json({"prompt": apply_template(body.get("messages", []))})
            if request.method == "POST" and path == "/tokenize":
                tokens = tokenize(str(body.get("content", "")))
                ids = list(range(len(tokens) + (BOS if body.get("add_special") else 0)))
                return Reply.json({"tokens": ids})
        if request.method == "POST" and path == "/v1/chat/completions":
            return self._chat(body, prompt_tokens)
        return Reply.text(404, "File Not Found", content_type="text/plain")

    def _models(self) -> Reply:
        data: list[dict[str, Any]] = []
        for model, context in self.models.items():
            entry: dict[str, Any] = {"id": model, "object": "model", "owned_by": self.engine, "created": 0}
            if self.engine == "vllm":
                entry["max_model_len"] = context
            if self.engine == "wai-serve":  # its three windows; the output a quarter of the context
                entry.update(context_window=context, max_output=context // 4, total_context=context)
            data.append(entry)
        return Reply.json({"object": "list", "data": data})

    def _vllm_tokenize(self, body: Mapping[str, Any]) -> Reply:
        model = str(body.get("model"))
        if model not in self.models:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        if isinstance(body.get("messages"), list):
            count = count_messages(body["messages"])
        else:
            count = len(tokenize(str(body.get("prompt", "")))) + (
                BOS if body.get("add_special_tokens", True) else 0
            )
        return Reply.json({"count": count, "max_model_len": self.models[model], "tokens": list(range(count))})

    def _chat(self, body: Mapping[str, Any], prompt_tokens: int | None) -> Reply:
        model = str(body.get("model"))
        if self.engine == "vllm" and model not in self.models:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        prompt = prompt_tokens if prompt_tokens is not None else count_messages(body.get("messages", []))
        max_tokens = body.get("max_tokens", 16)
        context = self.models.get(model, self._only_context())
        if prompt + max_tokens > context:
            if self.engine == "llama-server":
                return Reply.json(
                    {
                        "error": {
                            "code": 400,
                            "message": "the request exceeds the available context size, try increasing it",
                            "type": "exceed_context_size_error",
                            "n_prompt_tokens": prompt,
                            "n_ctx": context,
                        }
                    },
                    status=400,
                )
            return _error(
                400,
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{prompt + max_tokens} tokens ({prompt} in the messages, {max_tokens} in the completion).",
                "BadRequestError",
            )
        count = min(self.reply_tokens, max_tokens)
        pieces = [f"token{i}" if i == 1 else f" token{i}" for i in range(1, count + 1)]
        usage = usage_dict(prompt, count)
        finish = "length" if count >= max_tokens else "stop"
        head = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(pieces)}
            return Reply.json(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )
        chunks: list[dict[str, Any]] = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
        chunks += [{**head, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
        chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            chunks.append({**head, "choices": [], "usage": usage})
        return Reply.sse(chunks, pause=self.token_delay)


def trickle(seconds: int) -> Reply:
    """A JSON answer that never ends in time: one space a second for `seconds` seconds."""
    parts: list[Part] = []
    for _ in range(seconds):
        parts += [b" ", Pause(1.0)]
    return Reply(headers={"Content-Type": "application/json"}, parts=[*parts, b"{}"])


def _error(status: int, message: str, kind: str) -> Reply:
    return Reply.json(
        {"object": "error", "error": {"message": message, "type": kind, "code": status}}, status=status
    )


def openai_server(engine: Engine = "vllm", **options: Any) -> WorkersAIServer:
    """A server (not started: use it as a context manager) speaking as `engine` does."""
    return WorkersAIServer(OpenAISimulation(engine=engine, **options))


def base_url(server: WorkersAIServer) -> str:
    return f"http://127.0.0.1:{server.port}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["vllm", "llama-server", "plain", "wai-serve"], default="vllm")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tokens", type=int, default=8)
    args = parser.parse_args()
    server = WorkersAIServer(OpenAISimulation(engine=args.engine, reply_tokens=args.tokens), port=args.port)
    with server:
        print(f"{args.engine}-like server: {base_url(server)} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

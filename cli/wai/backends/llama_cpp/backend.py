"""Registers the local backend, llama.cpp on a GGUF file (stream.py beside it, built only when used)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wai.backends.registry import BackendSettings, Registration, register
from wai.catalog.entries import ModelSpec
from wai.errors import ConfigError
from wai.sampling import Sampling
from wai.settings import Credentials, wai_home

if TYPE_CHECKING:
    from wai.backends.base import Backend
    from wai.windows.counters import TokenCounter


def _unavailable(spec: ModelSpec, credentials: Credentials | None) -> str | None:
    path = spec.gguf_path()
    if path is None:
        return "no gguf in its catalog entry"
    if not path.is_file():
        return f"{path} is missing"
    return None


def _require(spec: ModelSpec, credentials: Credentials | None) -> None:
    if spec.gguf is None and spec.provider is not None:
        raise ConfigError(
            f"{spec.id} has no local weights",
            hint=f"use --backend openai (or auto): it is a model of provider {spec.provider}",
        )
    if spec.gguf is None:
        raise ConfigError(
            f"{spec.id} has no local weights",
            hint=f'add gguf = "FILE.gguf" to its entry in {wai_home() / "models.toml"}',
        )


def _build(settings: BackendSettings) -> Backend:
    from wai.backends.llama_cpp.stream import LlamaBackend

    opts = settings.local
    return LlamaBackend(gpu_layers=opts.gpu_layers, threads=opts.threads, debug=opts.debug)


def _counter(spec: ModelSpec) -> TokenCounter:
    from wai.windows.counters import local_counter

    return local_counter(spec)


def _windows(spec: ModelSpec) -> ModelSpec:
    from wai.backends.llama_cpp.stream import windows_on_file

    return windows_on_file(spec)


def _unsupported(sampling: Sampling) -> str | None:
    from wai.backends.llama_cpp.stream import unsupported

    return unsupported(sampling)


register(
    Registration(
        name="local",
        build=_build,
        serves=lambda spec: spec.gguf is not None,
        unavailable=_unavailable,
        require=_require,
        remedy=lambda spec: f"put its weights at {spec.gguf_path()}",
        counter=_counter,
        windows=_windows,
        tells_own_failure=True,
        title="llama.cpp",
        warm_modules=("wai.backends.llama_cpp.stream", "llama_cpp"),
        unsupported=_unsupported,
    )
)

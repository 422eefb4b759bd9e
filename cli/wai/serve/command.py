"""`wai serve`: check the options, choose the models and the token, bind, then run the server."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path

from wai.catalog.entries import Catalog, ModelSpec, load_catalog
from wai.errors import EXIT_OK, ConfigError, UsageError
from wai.notices import Notifier

ACCOUNT_ID = "local"  # any account id is accepted; this one goes into the printed export line
SERVE_EXTRA_HINT = "install it with `pip install 'wai[serve]'`, or `make install` in a source checkout"
# A token guards a server others can reach: one that short could be guessed.
MIN_REMOTE_TOKEN = 16


@dataclass(frozen=True, slots=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8787
    token: str | None = None  # --token or WAI_SERVE_TOKEN
    max_queue: int = 16
    parallel: int = 1  # requests each model decodes at once
    slot_context: int | None = None  # positions of each slot when parallel > 1
    stall_limit: float = 30.0  # seconds a streaming client may take no events, its backlog full
    read_timeout: float = 10.0  # seconds a client may take to send its headers, or between body parts
    models: list[str] = field(default_factory=list)
    gpu_layers: int | None = None
    threads: int | None = None
    debug: bool = False


def run_serve(options: ServeOptions, notifier: Notifier) -> int:
    _require_packages()
    token = options.token
    if token is not None:
        _check_token(token)
        if not is_loopback(options.host) and len(token) < MIN_REMOTE_TOKEN:
            raise UsageError(
                f"refusing to listen on {options.host} with a token of {len(token)} characters: "
                f"others could reach it, and a token under {MIN_REMOTE_TOKEN} characters can be guessed",
                hint="e.g. WAI_SERVE_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
            )
    elif not is_loopback(options.host):
        raise UsageError(
            f"refusing to listen on {options.host} without a token of your own: others could reach it",
            hint="set WAI_SERVE_TOKEN (or --token) to a secret, or listen on 127.0.0.1",
        )
    generated = token is None
    token = token or secrets.token_urlsafe(24)
    served = served_models(load_catalog(), options.models)
    sock = _bind(options.host, options.port)

    from wai.backends.registry import Backends, LocalOptions
    from wai.serve.app import ServeState, build_app, stderr_log
    from wai.serve.runner import serve
    from wai.serve.slots import within_slot
    from wai.serve.worker import DEFAULT_SLOT_CONTEXT, Pool
    from wai.turn.planner import TurnPlanner

    local = LocalOptions(gpu_layers=options.gpu_layers, threads=options.threads, debug=options.debug)

    def make_planner() -> TurnPlanner:
        # One per served model: each keeps its own model loaded. No credentials: nothing is sent on.
        return TurnPlanner(Backends(None, local, debug=options.debug))

    pool = Pool(
        {spec.id: spec for spec in served},
        max_queue=options.max_queue,
        parallel=options.parallel,
        slot_context=options.slot_context,
        make_planner=make_planner,
        log=stderr_log,
        debug=options.debug,
        stall_limit=options.stall_limit,
    )
    # Clients are told the windows a request gets: its slot's, when each request has one.
    positions = options.slot_context or (DEFAULT_SLOT_CONTEXT if options.parallel > 1 else None)
    shown = served if positions is None else [within_slot(spec, positions) for spec in served]
    state = ServeState(
        token=token,
        pool=pool,
        served=shown,
        log=stderr_log,
        debug=options.debug,
        read_timeout=options.read_timeout,
    )
    app = build_app(state)

    def ready() -> None:
        _banner(shown, sock, options.host, token if generated else None)

    try:
        serve(
            app,
            sock,
            pool,
            say=stderr_log,
            ready=ready,
            debug=options.debug,
            read_timeout=options.read_timeout,
        )
    finally:
        sock.close()
        pool.close()
    stderr_log("stopped")
    return EXIT_OK


def _require_packages() -> None:
    missing: list[str] = []
    for name in ("starlette", "uvicorn"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"wai serve needs the optional packages of its `serve` extra: {' and '.join(missing)} "
            + ("is" if len(missing) == 1 else "are")
            + " missing",
            hint=SERVE_EXTRA_HINT,
        )
    if find_spec("llama_cpp") is None:
        from wai.llama.native import INSTALL_HINT

        raise ConfigError(
            "wai serve runs models with llama-cpp-python, which is not installed", hint=INSTALL_HINT
        )


def _check_token(token: str) -> None:
    if not token.strip():
        raise UsageError("the token is empty", hint="set WAI_SERVE_TOKEN or --token to a secret")
    if token != token.strip() or any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise UsageError(
            "the token must be printable ASCII without spaces (it travels in an HTTP header)",
            hint="e.g. WAI_SERVE_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
        )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def served_models(catalog: Catalog, names: list[str]) -> list[ModelSpec]:
    """The models to serve: those named (ids, aliases or .gguf paths), else every catalog model
    whose GGUF file is present. Each must have its file."""
    if not names:
        present = [spec for spec in catalog if _file_present(spec)]
        if not present:
            from wai import settings

            raise ConfigError(
                f"no model to serve: no catalog model has its GGUF file in {settings.models_dir()}",
                hint="run `wai setup` for the built-in model, or name a .gguf file with -m",
            )
        return present
    chosen: dict[str, ModelSpec] = {}
    for name in names:
        spec = catalog.find(name)
        if spec is None:
            from wai.catalog.resolve import looks_like_gguf_path

            if not looks_like_gguf_path(name):
                _refuse_provider_model(name)
                raise ConfigError(f"unknown model '{name}'", hint="`wai models` lists the catalog")
            from wai.backends.llama_cpp.stream import spec_for_gguf

            spec = spec_for_gguf(Path(name), catalog)
            if catalog.find(spec.id) is None:
                # A file the catalog does not know is served under its file name: a full path
                # would make an odd model id in a URL, and would tell clients where files lie.
                spec = replace(spec, id=Path(name).name)
        if not _file_present(spec):
            where = spec.gguf_path()
            raise ConfigError(
                f"'{spec.id}' cannot be served: "
                + (f"its GGUF file {where} is missing" if where else "its catalog entry names no gguf file"),
                hint="`wai models` says which models can run locally",
            )
        earlier = chosen.setdefault(spec.id, spec)
        if earlier.gguf_path() != spec.gguf_path():
            # Two files of one name would answer as one model, the second never reached.
            raise UsageError(
                f"two models would be served as '{spec.id}': {earlier.gguf_path()} and {spec.gguf_path()}",
                hint="rename one of the files, or give each a catalog entry of its own",
            )
    return list(chosen.values())


def _refuse_provider_model(name: str) -> None:
    """A provider's model (NAME:MODEL) runs on its own server: wai serve runs GGUF files here."""
    from wai.providers import split_model
    from wai.settings import load_user_config

    found = split_model(name, load_user_config().providers())
    if found is not None:
        provider, _ = found
        raise ConfigError(
            f"'{name}' is a model of provider {provider.name}, which serves it itself at "
            f"{provider.base_url}; wai serve runs GGUF models on this machine",
            hint="point clients at that server, or name a catalog model or a .gguf file with -m",
        )


def _file_present(spec: ModelSpec) -> bool:
    path = spec.gguf_path()
    return path is not None and path.is_file()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP by name: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections of
    # a socket that says it is TCP, and with it on, a reply written in two parts on a kept-alive
    # connection waited 40 ms for the client's delayed acknowledgement.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host} port {port}: {exc.strerror or exc}",
            hint="choose another --port (0 lets the system pick one), or another --host",
        ) from None
    sock.setblocking(False)
    return sock


def _banner(served: list[ModelSpec], sock: socket.socket, host: str, generated: str | None) -> None:
    port = sock.getsockname()[1]
    shown = host.strip("[]")
    anywhere = shown in ("0.0.0.0", "::")
    if anywhere:
        shown = "127.0.0.1"
    origin = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    lines = [f"listening on {origin}" + (f" (and every address of this machine: {host})" if anywhere else "")]
    lines += ["models:"] + [
        f"  {spec.id}  ({spec.context_window} in, {spec.max_output} out, {spec.total_context} in all)"
        for spec in served
    ]
    exports = f"export CLOUDFLARE_BASE_URL={origin}/client/v4 CLOUDFLARE_ACCOUNT_ID={ACCOUNT_ID}"
    if generated is not None:
        lines += [
            "a token was made for this run (set WAI_SERVE_TOKEN to choose one); for wai, curl and the SDKs:",
            f"  {exports} CLOUDFLARE_API_TOKEN={generated}",
            f"the page: {origin}/?token={generated}",
        ]
    else:
        lines += [
            "for wai, curl and the SDKs (CLOUDFLARE_API_TOKEN: your token):",
            f"  {exports}",
            f"the page: {origin}/?token=YOUR_TOKEN",
        ]
    lines.append(f"OpenAI clients: base_url {origin}/v1")
    for line in lines:
        sys.stderr.write(f"wai serve: {line}\n" if not line.startswith("  ") else f"{line}\n")
    sys.stderr.flush()


__all__ = ["ServeOptions", "is_loopback", "run_serve", "served_models"]

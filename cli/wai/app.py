"""The `wai` command line: thin Typer commands that turn options into a run."""

# No `from __future__ import annotations` here: Typer reads each command's options from its
# annotations at every start, and evaluating them as strings (compiling each one) cost more
# start-up time than anything else in this module. Names imported only for type checking are
# written as strings.
import contextlib
import copy
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand
from typer.models import CommandInfo

from wai import __version__
from wai.backends.names import backend_names
from wai.commands.complete import complete_model
from wai.commands.prompt_input import PROMPT_RULE
from wai.commands.sampling_flags import finite, with_sampling_options
from wai.errors import EXIT_INTERRUPTED, EXIT_OK, OutputError, WaiError
from wai.notices import Notifier, stderr_wants_color
from wai.sampling import Sampling

if TYPE_CHECKING:
    from wai.render.failure_json import FailureReport
    from wai.schema import Schema

app = typer.Typer(
    name="wai",
    help="Chat with large language models on Cloudflare Workers AI or llama.cpp, from the terminal.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (Typer's)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _backend_mode(value: str) -> str:
    """--backend: "auto" or a backend's name, as the registry lists them (names are declared there
    alone, and read each time: a backend registered after start-up is a choice too)."""
    modes = ("auto", *backend_names())
    if value not in modes:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, modes))}.")
    return value


def _complete_backend(incomplete: str) -> list[str]:
    return [mode for mode in ("auto", *backend_names()) if mode.startswith(incomplete)]


_BACKEND_METAVAR = "<" + "|".join(("auto", *backend_names())) + ">"


class ColorChoice(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


class EffortChoice(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class FitChoice(StrEnum):
    error = "error"
    head = "head"
    tail = "tail"


def _guarded(
    action: Callable[[Notifier], int],
    *,
    debug: bool,
    color: str = "auto",
    report: "FailureReport | None" = None,
) -> None:
    """Run a command: expected failures become one line and an exit code, never a traceback.

    `report`: the command was asked for JSON, so a failure it did not report in its own output
    (one before any turn) is also told on stdout, as a document with `error` set.
    """
    from wai.terminal import stop_signals

    notifier = Notifier(color=stderr_wants_color(color, sys.stderr))
    try:
        stop_signals.install()  # a stop that came while wai started is acted on here, as any other
        code = action(notifier)
        sys.stdout.flush()  # a full disk shows at the flush: still this command's failure
    except WaiError as error:
        code = _failed(error, notifier, debug=debug)
        # Standard output that refused the text refuses the document too.
        if report is not None and not isinstance(error, OutputError):
            from wai.render.failure_json import error_of

            _report(report, error_of(error))
    except KeyboardInterrupt:
        notifier.warn("interrupted")
        code = EXIT_INTERRUPTED
        if report is not None:
            from wai.render.failure_json import interrupted_error

            _report(report, interrupted_error(stop_signals.exit_code(code)))
    except BrokenPipeError:
        # The reader went away (`wai ask ... | head`): stop quietly, and keep Python's own
        # flush at exit from complaining about the closed pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_OK
    raise typer.Exit(stop_signals.exit_code(code))


def _report(report: "FailureReport", error: dict[str, object]) -> None:
    with contextlib.suppress(WaiError, OSError):  # stdout gone: stderr has said it already
        report.write(sys.stdout, error)


def _machine_report(command: str, args: Sequence[str]) -> "FailureReport | None":
    """The report a command line asks for with --json or --jsonl (before any `--`), else None."""
    flags = set(args[: args.index("--")] if "--" in args else args)
    turn = command == "ask"
    if "--json" not in flags and not ("--jsonl" in flags and turn):
        return None
    # Only now: a command without --json or --jsonl starts without the json module.
    from wai.render.failure_json import FailureReport

    return FailureReport("json" if "--json" in flags else "jsonl", turn=turn)


# Click's UsageError, whichever Click Typer parses with (recent Typer carries its own copy).
_ClickUsageError: type[Exception] = next(
    kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "UsageError"
)


class _MachineCommand(TyperCommand):
    """A command with --json: an option Click refuses while parsing is told in JSON on stdout
    too, as every other failure of the command is."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Any: Click's Context, either copy
        report = _machine_report(self.name or "", args)
        try:
            return super().parse_args(ctx, args)
        except _ClickUsageError as error:
            if report is not None:
                from wai.render.failure_json import error_object

                message, status = error.format_message(), error.exit_code  # type: ignore[attr-defined]
                _report(report, error_object("usage", message, status))
            raise


def _failed(error: WaiError, notifier: Notifier, *, debug: bool = False) -> int:
    """The one way an expected failure is told: one line on stderr; its exit code."""
    if debug:
        import traceback

        traceback.print_exc()
    notifier.error(str(error))
    return error.exit_code


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wai {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    pass


# Options shared by several commands, declared once.
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "-m",
        "--model",
        help="Catalog id, alias, .gguf path, or PROVIDER:MODEL.",
        autocompletion=complete_model,
    ),
]
SystemOpt = Annotated[str | None, typer.Option("-s", "--system", help="System prompt.")]
MaxTokensOpt = Annotated[
    int | None, typer.Option("--max-tokens", min=1, help="Most reply tokens (capped by the model).")
]
# The sampling options (--temperature, --top-k, ...) come from their one declaration in
# wai.sampling: a command takes them as `sampling: Sampling = NO_SAMPLING`, spread into options
# by `with_sampling_options`.
NO_SAMPLING = Sampling()
BackendOpt = Annotated[
    str,
    typer.Option(
        help="Where the model runs.",
        callback=_backend_mode,
        metavar=_BACKEND_METAVAR,
        autocompletion=_complete_backend,
    ),
]
ColorOpt = Annotated[ColorChoice, typer.Option(help="Colour and live panel.")]
StatsOpt = Annotated[
    bool | None, typer.Option("--stats/--no-stats", help="Timing and token figures.", show_default=False)
]
ConnectTimeoutOpt = Annotated[
    float, typer.Option(min=0.1, max=86_400, callback=finite, help="Seconds to connect.")
]
ReadTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        min=0.1,
        max=86_400,
        callback=finite,
        help="Most seconds between two stream events (default 60; with --no-stream, the whole reply: 300).",
        show_default=False,
    ),
]


# Without a stream the server says nothing until the whole reply is written.
STREAM_READ_TIMEOUT, WHOLE_REPLY_READ_TIMEOUT = 60.0, 300.0
GpuLayersOpt = Annotated[
    int | None, typer.Option("--gpu-layers", min=-1, help="Layers offloaded to the GPU (local; -1 all).")
]
# llama.cpp runs at most 512 threads (GGML_MAX_N_THREADS); far more (100000) crashes it outright.
MOST_THREADS = 512
ThreadsOpt = Annotated[
    int | None, typer.Option(min=1, max=MOST_THREADS, help=f"CPU threads (local), at most {MOST_THREADS}.")
]
ContinueOpt = Annotated[
    bool, typer.Option("-c", "--continue", help="Continue the latest logged conversation.")
]
CidOpt = Annotated[
    str | None, typer.Option("--cid", help="Continue this conversation (id or unique prefix).")
]
NoLogOpt = Annotated[bool, typer.Option("--no-log", help="Do not write to the transcript log.")]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Send even when today's daily_neurons budget is spent.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
EffortOpt = Annotated[
    EffortChoice | None,
    typer.Option(
        "--reasoning-effort",
        help="How long a reasoning model thinks (sent as reasoning_effort; reasoning models only).",
        show_default=False,
    ),
]
ShowThinkingOpt = Annotated[
    bool,
    typer.Option(
        "--show-thinking", help="Keep a reasoning model's thinking whole in the panel (else folded)."
    ),
]
NoStdinOpt = Annotated[
    bool, typer.Option("--no-stdin", help="Never read stdin: the argument is the whole text.")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Diagnostics and tracebacks on stderr.")]
SchemaOpt = Annotated[
    str | None,
    typer.Option(
        "--schema",
        metavar="SPEC",
        help="Reply with JSON that satisfies SPEC: a JSON Schema, a .json file, or fields "
        "such as 'name, age int, bio: a short biography'.",
        show_default=False,
    ),
]
SchemaMultiOpt = Annotated[
    str | None,
    typer.Option(
        "--schema-multi",
        metavar="SPEC",
        help='Like --schema, for a list: {"items": [...]} of objects that satisfy SPEC.',
        show_default=False,
    ),
]


def _bare_report(json_output: bool) -> "FailureReport | None":
    """A failure of a command whose --json document is not a turn's: `{"error": {...}}`."""
    from wai.render.failure_json import FailureReport

    return FailureReport("json") if json_output else None


def _schema(schema: str | None, schema_multi: str | None) -> "Schema | None":
    """The checked schema of --schema or --schema-multi: a bad one is refused before anything is
    loaded or sent."""
    if schema is None and schema_multi is None:
        return None
    from wai.errors import UsageError
    from wai.schema import load_schema

    if schema is not None and schema_multi is not None:
        raise UsageError("--schema and --schema-multi cannot be used together")
    if schema_multi is not None:
        return load_schema(schema_multi, multi_items=True, option="--schema-multi")
    assert schema is not None
    return load_schema(schema)


def _continuing(continue_last: bool, cid: str | None) -> None:
    if continue_last and cid is not None:
        from wai.errors import UsageError

        raise UsageError("-c and --cid cannot be used together")


@app.command(
    help=f"Ask one question and stream the answer.\n\n{PROMPT_RULE}",
    short_help="Ask one question.",
    cls=_MachineCommand,
)
@with_sampling_options
def ask(
    prompt: Annotated[str | None, typer.Argument(help="The prompt; '-' reads it from stdin.")] = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    max_tokens: MaxTokensOpt = None,
    sampling: Sampling = NO_SAMPLING,
    reasoning_effort: EffortOpt = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Send the prompt verbatim: no chat template, no system prompt.")
    ] = False,
    backend: BackendOpt = "auto",
    schema: SchemaOpt = None,
    schema_multi: SchemaMultiOpt = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Ask Workers AI for the whole reply at once.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object at the end.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON object per event.")] = False,
    color: ColorOpt = ColorChoice.auto,
    stats: StatsOpt = None,
    show_thinking: ShowThinkingOpt = False,
    fit: Annotated[
        FitChoice, typer.Option(help="Prompt over the window: refuse, or keep its head or tail.")
    ] = FitChoice.error,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; send nothing.")
    ] = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    read_timeout: ReadTimeoutOpt = None,
    gpu_layers: GpuLayersOpt = None,
    threads: ThreadsOpt = None,
    continue_last: ContinueOpt = False,
    cid: CidOpt = None,
    no_log: NoLogOpt = False,
    no_stdin: NoStdinOpt = False,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    from wai.backends.registry import LocalOptions
    from wai.commands.ask import AskOptions, run_ask
    from wai.conversation import Timeouts
    from wai.errors import UsageError

    def action(notifier: Notifier) -> int:
        if json_output and jsonl:
            raise UsageError("--json and --jsonl cannot be used together")
        _continuing(continue_last, cid)
        wanted = _schema(schema, schema_multi)
        options = AskOptions(
            prompt=prompt,
            model=model,
            system=system,
            max_tokens=max_tokens,
            sampling=sampling,
            backend=backend,
            stream=not no_stream,
            output="json" if json_output else "jsonl" if jsonl else "auto",
            color=color.value,
            stats=stats,
            fit=fit.value,
            dry_run=dry_run,
            timeouts=Timeouts(
                connect=connect_timeout,
                # Workers AI's JSON mode (--schema) answers whole, as --no-stream does.
                read=read_timeout
                or (WHOLE_REPLY_READ_TIMEOUT if no_stream or wanted else STREAM_READ_TIMEOUT),
                read_given=read_timeout is not None,
            ),
            local=LocalOptions(gpu_layers=gpu_layers, threads=threads, debug=debug),
            debug=debug,
            continue_last=continue_last,
            cid=cid,
            log=not no_log,
            reasoning_effort=reasoning_effort.value if reasoning_effort else None,
            show_thinking=show_thinking,
            use_stdin=not no_stdin,
            raw=raw,
            schema=wanted,
            force=force,
        )
        return run_ask(options, notifier)

    report = None
    if json_output or jsonl:  # only then the failure report (and json) is imported
        from wai.render.failure_json import FailureReport

        report = FailureReport("json" if json_output else "jsonl", turn=True)
    _guarded(action, debug=debug, color=color.value, report=report)


@app.command(
    help="Ask many prompts at once: one record a line from stdin or -i FILE (a JSON object, or "
    'plain text read as {"input": LINE}), one JSON line of answer per record on stdout or -o FILE.',
    short_help="Ask many prompts at once, one JSON line each.",
)
@with_sampling_options
def batch(
    template: Annotated[
        str | None,
        typer.Argument(
            metavar="TEMPLATE",
            help="The prompt, with {field} filled from each record ({input} for plain lines); "
            "without it a record's prompt, messages or line is the prompt.",
            show_default=False,
        ),
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("-i", "--input", help="Read the records from FILE (default: stdin).", metavar="FILE"),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Write the answers to FILE (default: stdout).", metavar="FILE"),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Keep the records -o FILE answered without error; ask the rest."),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "-j",
            "--jobs",
            min=1,
            max=256,
            help="Records asked at once (default 4), or on llama.cpp decoded together (default 8).",
            show_default=False,
        ),
    ] = None,
    unordered: Annotated[
        bool, typer.Option("--unordered", help="Write each answer as it ends, not in input order.")
    ] = False,
    echo: Annotated[bool, typer.Option("--echo", help="Copy each record into its line as 'record'.")] = False,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue",
            help="Send the records through Workers AI's batch queue (models that list async_queue); "
            "with -o FILE the request ids are kept in FILE.queue.json for --resume.",
        ),
    ] = False,
    queue_chunk: Annotated[
        int,
        typer.Option(
            "--queue-chunk", min=1, help="Records per queued request (each under 10 MB).", metavar="N"
        ),
    ] = 100,
    force: ForceOpt = False,
    no_log: NoLogOpt = False,
    queue_poll: Annotated[
        float,
        typer.Option(
            "--queue-poll",
            min=0.0,
            help="Seconds before the first poll of the queue; each wait after is 1.5 times as long, "
            "at most 30.",
            metavar="SECONDS",
        ),
    ] = 2.0,
    model: ModelOpt = None,
    system: SystemOpt = None,
    max_tokens: MaxTokensOpt = None,
    sampling: Sampling = NO_SAMPLING,
    reasoning_effort: EffortOpt = None,
    backend: BackendOpt = "auto",
    schema: SchemaOpt = None,
    schema_multi: SchemaMultiOpt = None,
    fit: Annotated[
        FitChoice, typer.Option(help="A record over the window: refuse it, or keep its head or tail.")
    ] = FitChoice.error,
    color: ColorOpt = ColorChoice.auto,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    read_timeout: ReadTimeoutOpt = None,
    gpu_layers: GpuLayersOpt = None,
    threads: ThreadsOpt = None,
    debug: DebugOpt = False,
) -> None:
    from wai.backends.registry import LocalOptions
    from wai.commands.batch import BatchOptions, run_batch
    from wai.conversation import Timeouts

    def action(notifier: Notifier) -> int:
        options = BatchOptions(
            template=template,
            input=input_file,
            output=output_file,
            resume=resume,
            unordered=unordered,
            echo=echo,
            jobs=jobs,
            model=model,
            system=system,
            max_tokens=max_tokens,
            sampling=sampling,
            backend=backend,
            fit=fit.value,
            reasoning_effort=reasoning_effort.value if reasoning_effort else None,
            schema=_schema(schema, schema_multi),
            timeouts=Timeouts(
                connect=connect_timeout,
                read=read_timeout or STREAM_READ_TIMEOUT,
                read_given=read_timeout is not None,
            ),
            local=LocalOptions(gpu_layers=gpu_layers, threads=threads, debug=debug),
            debug=debug,
            force=force,
            log=not no_log,
            queue=queue,
            queue_chunk=queue_chunk,
            queue_poll=queue_poll,
        )
        return run_batch(options, notifier)

    _guarded(action, debug=debug, color=color.value)


@app.command(
    help="Chat in the terminal: a conversation with history, slash commands (/help) and transcripts.",
    short_help="Chat: a conversation in the terminal.",
)
@with_sampling_options
def chat(
    model: ModelOpt = None,
    system: SystemOpt = None,
    backend: BackendOpt = "auto",
    continue_last: ContinueOpt = False,
    cid: CidOpt = None,
    vi: Annotated[bool, typer.Option("--vi", help="Vi key bindings.")] = False,
    max_tokens: MaxTokensOpt = None,
    sampling: Sampling = NO_SAMPLING,
    reasoning_effort: EffortOpt = None,
    color: ColorOpt = ColorChoice.auto,
    stats: StatsOpt = None,
    show_thinking: ShowThinkingOpt = False,
    schema: SchemaOpt = None,
    schema_multi: SchemaMultiOpt = None,
    no_log: NoLogOpt = False,
    connect_timeout: ConnectTimeoutOpt = 10.0,
    read_timeout: ReadTimeoutOpt = None,
    gpu_layers: GpuLayersOpt = None,
    threads: ThreadsOpt = None,
    force: ForceOpt = False,
    debug: DebugOpt = False,
) -> None:
    from wai.backends.registry import LocalOptions
    from wai.commands.chat.repl import ChatOptions, run_chat
    from wai.conversation import Timeouts

    def action(notifier: Notifier) -> int:
        _continuing(continue_last, cid)
        wanted = _schema(schema, schema_multi)
        options = ChatOptions(
            model=model,
            system=system,
            backend=backend,
            continue_last=continue_last,
            cid=cid,
            vi=vi,
            max_tokens=max_tokens,
            sampling=sampling,
            color=color.value,
            stats=stats,
            timeouts=Timeouts(
                connect=connect_timeout,
                read=read_timeout or STREAM_READ_TIMEOUT,
                read_given=read_timeout is not None,
            ),
            local=LocalOptions(gpu_layers=gpu_layers, threads=threads, debug=debug),
            log=not no_log,
            debug=debug,
            reasoning_effort=reasoning_effort.value if reasoning_effort else None,
            show_thinking=show_thinking,
            schema=wanted,
            force=force,
        )
        return run_chat(options, notifier)

    _guarded(action, debug=debug, color=color.value)


@app.command(
    help="List the model catalog: windows, and which backends can serve each model now.",
    short_help="The model catalog and what can run it.",
    cls=_MachineCommand,
)
def models(
    json_output: JsonOpt = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Read the account's current models from Workers AI first.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    from wai.commands.models import show_models

    _guarded(
        lambda notifier: show_models(json_output=json_output, refresh=refresh, notifier=notifier),
        debug=debug,
        report=_bare_report(json_output),
    )


@app.command(
    help="Show logged conversations: the most recent ones, or one of them with --cid.",
    short_help="Logged conversations.",
    cls=_MachineCommand,
)
def logs(
    conversation: Annotated[
        str | None,
        typer.Argument(help="A conversation (id or prefix): as --cid, or what --export writes."),
    ] = None,
    count: Annotated[
        int,
        typer.Option(
            "-n", "--count", min=0, help="How many conversations (with --cid: latest turns); 0 all."
        ),
    ] = 10,
    json_output: JsonOpt = False,
    cid: Annotated[
        str | None, typer.Option("--cid", help="Show this conversation (id or unique prefix).")
    ] = None,
    usage: Annotated[
        bool,
        typer.Option(
            "--usage", help="Tokens, cost and neurons used, with today's share of the free 10,000 neurons."
        ),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="With --usage: from this long ago (7d, 24h, 2w) or this UTC day."),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="With --usage: totals by day (UTC) or by model.", metavar="day|model"),
    ] = None,
    prune_cache: Annotated[
        bool,
        typer.Option("--prune-cache", help="Delete the saved llama.cpp states of local conversations."),
    ] = False,
    export: Annotated[
        str | None,
        typer.Option("--export", help="Write a conversation for sharing: md or json.", metavar="md|json"),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    from wai.commands.logs import LogsOptions, run_logs

    options = LogsOptions(
        count=count,
        json=json_output,
        cid=cid,
        usage=usage,
        since=since,
        by=by,
        export=export,
        conversation=conversation,
        prune_cache=prune_cache,
    )
    _guarded(
        lambda notifier: run_logs(options, notifier),
        debug=debug,
        report=_bare_report(json_output),
    )


@app.command(
    help="Count a text's tokens for a model, against its windows (exit 3 when over).",
    short_help="Count tokens against a model's windows.",
    cls=_MachineCommand,
)
def tokens(
    text: Annotated[str | None, typer.Argument(help="The text; '-' or none reads stdin.")] = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Whose prompt format to count.",
            callback=_backend_mode,
            metavar=_BACKEND_METAVAR,
            autocompletion=_complete_backend,
        ),
    ] = "auto",
    raw: Annotated[
        bool, typer.Option("--raw", help="The raw prompt as `wai ask --raw` sends it: no template.")
    ] = False,
    json_output: JsonOpt = False,
    no_stdin: NoStdinOpt = False,
    debug: DebugOpt = False,
) -> None:
    from wai.commands.tokens import run_tokens

    _guarded(
        lambda notifier: run_tokens(
            text,
            model=model,
            system=system,
            backend=backend,
            raw=raw,
            json_output=json_output,
            notifier=notifier,
            use_stdin=not no_stdin,
        ),
        debug=debug,
        report=_bare_report(json_output),
    )


@app.command(
    help="Install the built-in local model and the tokenizer vocabularies.",
    short_help="Install the built-in model and vocabularies.",
)
def setup(debug: DebugOpt = False) -> None:
    from wai.commands.setup import run_setup

    _guarded(run_setup, debug=debug)


@app.command(
    help=(
        "Serve local models over the Workers AI REST API (and its OpenAI-compatible routes), with a "
        "browser page at /. Needs the `serve` extra."
    ),
    short_help="Serve local models over the Workers AI API.",
)
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (another than loopback needs a token).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8787,
    token: Annotated[
        str | None,
        typer.Option(envvar="WAI_SERVE_TOKEN", help="The API token clients must send (default: a new one)."),
    ] = None,
    max_queue: Annotated[
        int, typer.Option("--max-queue", min=0, help="Requests that may wait per model; more get 429.")
    ] = 16,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel",
            min=1,
            max=256,
            help="Requests each model decodes at once, together in one batch per step (llama.cpp).",
        ),
    ] = 1,
    slot_context: Annotated[
        int | None,
        typer.Option(
            "--slot-context",
            min=16,
            help="Most positions (prompt and reply tokens) of each request (default: the model's "
            "trained context; 4096 with --parallel above 1).",
        ),
    ] = None,
    stall_limit: Annotated[
        float,
        typer.Option(
            "--stall-limit",
            min=1,
            max=86_400,
            callback=finite,
            help="Seconds a streaming client may take no events before its reply is cut.",
        ),
    ] = 30.0,
    read_timeout: Annotated[
        float,
        typer.Option(
            "--read-timeout",
            min=1,
            max=3600,
            callback=finite,
            help="Seconds a client may take to send a request's headers, or between parts of its body "
            "(then 408).",
        ),
    ] = 10.0,
    model: Annotated[
        list[str] | None,
        typer.Option("-m", "--model", help="Serve this model (repeatable; default: all with a GGUF)."),
    ] = None,
    gpu_layers: GpuLayersOpt = None,
    threads: ThreadsOpt = None,
    debug: DebugOpt = False,
) -> None:
    from wai.serve.command import ServeOptions, run_serve

    options = ServeOptions(
        host=host,
        port=port,
        token=token,
        max_queue=max_queue,
        parallel=parallel,
        slot_context=slot_context,
        stall_limit=stall_limit,
        read_timeout=read_timeout,
        models=list(model or []),
        gpu_layers=gpu_layers,
        threads=threads,
        debug=debug,
    )
    _guarded(lambda notifier: run_serve(options, notifier), debug=debug)


@contextlib.contextmanager
def _commands_needed(argv: Sequence[str]) -> Iterator[None]:
    """Typer builds the Click options of every command it holds at each start (about 120 of
    them), and a command line needs few: `wai ask ...` needs ask's alone, and `wai` or
    `wai --help` none, only each command's name and help to list. Shell completion and anything
    else (a mistyped name, an option first) get every command whole, as Typer would make them."""
    arguments = list(argv[1:])
    completing = any(key.startswith(("_WAI_COMPLETE", "_TYPER_COMPLETE")) for key in os.environ)
    every = app.registered_commands
    if completing:
        needed = every
    elif arguments in ([], ["--help"], ["-h"]):
        needed = [_listed(info) for info in every]
    else:
        needed = [info for info in every if _command_name(info) == arguments[0]] or every
    app.registered_commands = needed
    try:
        yield
    finally:
        app.registered_commands = every


def _command_name(info: CommandInfo) -> str:
    if info.name:
        return info.name
    callback = info.callback
    return typer.main.get_command_name(callback.__name__) if callback is not None else ""


def _listed(info: CommandInfo) -> CommandInfo:
    """`info` as `wai --help` lists it (its name, help, short help, whether hidden), with a callback
    that takes no options: a listing shows none of them."""
    listed = copy.copy(info)
    listed.name = _command_name(info)
    listed.help = info.help if info.help is not None else inspect.getdoc(info.callback)
    listed.callback = _listed_only
    return listed


def _listed_only() -> None:
    raise AssertionError("a command made to be listed in --help was run")


def main() -> None:
    from wai.errors import OutputError
    from wai.terminal.stdout_guard import guard_stdout

    guard_stdout()
    try:
        try:
            with _commands_needed(sys.argv):
                app()
        finally:
            sys.stdout.flush()  # what Click printed itself (--help, --version) is still buffered
    except OutputError as error:
        raise SystemExit(_failed(error, Notifier(color=stderr_wants_color("auto", sys.stderr)))) from None


if __name__ == "__main__":
    main()

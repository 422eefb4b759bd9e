"""One-shot `wai ask`: prompt -> model -> budget -> backend -> sink."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, TextIO

from wai.backends.base import Backend, BackendMode, BackendName
from wai.backends.registry import LocalOptions, backend_named
from wai.catalog.entries import ModelSpec
from wai.commands.prompt_input import STDIN_ONLY, read_prompt, valid_text
from wai.conversation import Message, ReasoningEffort, Timeouts
from wai.errors import EXIT_INTERRUPTED, EXIT_OK, UsageError
from wai.notices import Notifier, WarningsKept
from wai.render.base import Sink
from wai.render.choose import ColorMode, OutputMode
from wai.sampling import Sampling
from wai.store.transcript import TranscriptLog
from wai.terminal.safe_text import json_for_terminal
from wai.tokens.budget import FitMode, Plan
from wai.tokens.counters import RawCounter, TokenCounter
from wai.turn.planner import PlannedTurn, TurnAsk, TurnPlanner
from wai.turn.play import sink_for

if TYPE_CHECKING:
    from wai.schema import Schema  # imported by the command line only when --schema is given


@dataclass(frozen=True, slots=True)
class AskOptions:
    prompt: str | None
    model: str | None = None
    system: str | None = None
    max_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    backend: BackendMode = "auto"
    stream: bool = True
    output: OutputMode = "auto"
    color: ColorMode = "auto"
    stats: bool | None = None
    fit: FitMode = "error"
    dry_run: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)
    local: LocalOptions = field(default_factory=LocalOptions)
    debug: bool = False
    continue_last: bool = False
    cid: str | None = None
    log: bool = True
    reasoning_effort: ReasoningEffort | None = None
    show_thinking: bool = False
    use_stdin: bool = True  # False: --no-stdin
    raw: bool = False  # the prompt sent verbatim as `prompt`, no chat template
    schema: Schema | None = None  # --schema, --schema-multi: the reply must satisfy it
    force: bool = False  # --force: send even when the daily_neurons budget is spent


def run_ask(
    options: AskOptions,
    notifier: Notifier,
    *,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    if options.raw:
        _check_raw(options)
    stdin_stream = stdin if stdin is not None else _stdin_buffer()
    stdin_is_tty = stdin_stream is None or stdin_stream.isatty()
    # What the input held that was not text is warned of at once, and told again among --json's
    # warnings with the plan's.
    noting = WarningsKept(notifier)
    prompt = read_prompt(options.prompt, stdin_stream, stdin_is_tty, noting, use_stdin=options.use_stdin)

    log = TranscriptLog(notifier, source="ask", record=options.log and not options.dry_run)
    try:
        return _run(options, noting, prompt, log, stdout)
    finally:
        log.close()


def _run(
    options: AskOptions, notifier: WarningsKept, prompt: str, log: TranscriptLog, stdout: TextIO | None
) -> int:
    model_name = options.model
    system = valid_text(options.system, "the system prompt", notifier) if options.system else None
    of_the_input = tuple(notifier.kept)
    history: tuple[Message, ...] = ()
    if options.continue_last or options.cid is not None:
        continued = log.continue_conversation(options.cid)
        history = continued.messages()
        model_name = model_name or continued.model
        system = system if system is not None else continued.system

    messages: tuple[Message, ...] = (*history, Message("user", prompt))
    if system:
        messages = (Message("system", system), *messages)
    # A question typed before piped text is never cut: only the piped part is.
    typed = options.prompt if options.prompt not in (None, STDIN_ONLY) else None
    ask = TurnAsk(
        prompt,
        messages,
        system=system,
        max_tokens=options.max_tokens,
        sampling=options.sampling,
        reasoning_effort=options.reasoning_effort,
        raw=options.raw,
        stream=options.stream,
        timeouts=options.timeouts,
        fit=options.fit,
        keep_start=len(typed) + 2 if typed is not None and prompt != typed else 0,
        schema=options.schema,
        affinity=log.affinity(),
    )
    read_timeout = options.timeouts.read if options.timeouts.read_given else None
    with TurnPlanner.for_user(options.local, debug=options.debug, read_timeout=read_timeout) as planner:
        # A dry run sends nothing, so it needs no credentials or weights: it takes the backend
        # that would run.
        target = planner.resolve(
            model_name, options.backend, sending=not options.dry_run, sampling=options.sampling
        )
        out = stdout or sys.stdout
        sink = None if options.dry_run else _sink(options, notifier, out)
        # A dry run loads no weights: the vocabulary alone counts the same. Nor does a turn the
        # panel shows: the model then loads inside it, under a spinner that counts the seconds,
        # instead of before it on a blank screen; elsewhere the model that answers counts, loaded once.
        counter = planner.counter(target, built=sink is not None and not sink.shows_waiting)
        turn = planner.plan(ask, target, counter=counter)
        warned = turn.warnings
        if options.dry_run:  # a turn has its backend's warnings say it
            # Of the windows planned with: a context the server told replaces an assumed one.
            windows = turn.plan.windows or target.spec
            warned = (*planner.warnings(target, windows), *warned)
        for warning in warned:
            notifier.warn(warning)
        if sink is None:
            return _dry_run(turn, out, planner.backends.for_planning(target.backend))
        of_the_budget: list[str] = []  # said on stderr before the turn, so in --json's warnings too

        def warn_of_the_budget(warning: str) -> None:
            notifier.warn(warning)
            of_the_budget.append(warning)

        planner.check_allowance(turn, force=options.force, warn=warn_of_the_budget)
        warned = (*of_the_input, *warned, *of_the_budget)
        return _play(options, planner, turn, warned, notifier, log, sink)


def _dry_run(turn: PlannedTurn, out: TextIO, backend: Backend) -> int:
    plan = turn.plan
    counter = turn.counter if turn.ask.raw else None
    report = describe_dry_run(
        plan, plan.windows or turn.windows, turn.target.backend, counter=counter, backend=backend
    )
    report["reasoning_effort"] = turn.request.reasoning_effort
    # What --schema sends (as response_format, or as the grammar): the check a reader runs by hand.
    report["schema"] = turn.request.schema.document if turn.request.schema is not None else None
    out.write(json_for_terminal(json.dumps(report, indent=2, ensure_ascii=False), out) + "\n")
    return EXIT_OK


def _play(
    options: AskOptions,
    planner: TurnPlanner,
    turn: PlannedTurn,
    warned: tuple[str, ...],
    notifier: Notifier,
    log: TranscriptLog,
    sink: Sink,
) -> int:
    spec, plan = turn.target.spec, turn.plan
    backend = planner.backends.get(turn.target.backend)
    if options.debug:
        notifier.info(f"model {spec.id} ({spec.source}), backend {turn.target.backend}: {backend.describe()}")
        notifier.info(
            f"prompt {plan.prompt_tokens} tokens ({'exact' if plan.exact else 'estimated'}), "
            f"max_tokens {plan.max_tokens}"
        )
    result = planner.play(turn, sink, notifier, warned=warned)
    turn.record(log, result)
    if options.debug:  # after the turn, the local backend can say what it loaded and offloaded
        notifier.info(f"backend after the turn: {backend.describe()}")
    if result.interrupted:
        return EXIT_INTERRUPTED
    return result.error.exit_code if result.error else EXIT_OK


def _sink(options: AskOptions, notifier: Notifier, out: TextIO) -> Sink:
    return sink_for(
        notifier,
        output=options.output,
        color=options.color,
        stats=options.stats,
        stdout=out,
        show_thinking=options.show_thinking,
        schema=options.schema is not None,
    )


def _check_raw(options: AskOptions) -> None:
    """A raw prompt is the whole prompt: nothing can be templated around it."""
    if options.system is not None:
        raise UsageError(
            "--raw sends the prompt verbatim, without a chat template, so -s/--system cannot be added; "
            "write the system part into the prompt in the model's own format"
        )
    if options.continue_last or options.cid is not None:
        raise UsageError(
            "--raw sends one verbatim prompt, so it cannot continue a conversation (-c, --cid); "
            "write the earlier turns into the prompt in the model's own format"
        )


def _stdin_buffer() -> BinaryIO | None:
    stream = sys.stdin
    if stream is None or stream.closed:
        return None
    return stream.buffer


def describe_dry_run(
    plan: Plan,
    model: ModelSpec,
    backend_name: BackendName,
    *,
    counter: TokenCounter | None = None,
    backend: Backend | None = None,
) -> dict[str, object]:
    """`wai ask --dry-run`: what would be sent, as a JSON-ready dict; nothing is sent.

    `counter`: the one that counted the plan, when not the model's usual one (a raw prompt's);
    `backend`: the backend as the command made it (its connections are the command's to close).
    """
    raw = isinstance(counter, RawCounter)
    backend = backend or backend_named(backend_name)
    counter = counter or backend.counter(model)
    prompt = counter.prompt_text(plan.messages)
    if prompt is None:
        prompt = backend.prompt_text(model, plan.messages)
    prompt_format = "verbatim (--raw: no chat template)" if raw else backend.prompt_format
    return {
        "model": model.id,
        "backend": backend_name,
        "messages": [m.as_dict() for m in plan.messages],
        "raw": raw,
        "prompt": prompt,
        "prompt_format": prompt_format,
        "prompt_tokens": plan.prompt_tokens,
        "exact": plan.exact,
        "counted_with": counter.source,
        "max_tokens": plan.max_tokens,
        "context_window": model.context_window,
        "max_output": model.max_output,
        "total_context": model.total_context,
        "dropped_messages": plan.dropped_messages,
        "cut_tokens": plan.cut_tokens,
        "notices": list(plan.notices),
    }

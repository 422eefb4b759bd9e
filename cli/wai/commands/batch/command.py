"""`wai batch [TEMPLATE]`: reads the records, plans and plays each as `wai ask` would (the turn
planner), and writes one JSON line per record, in input order or as they end."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from wai.backends.backoff import SharedBackoff
from wai.backends.base import Backend, BackendMode
from wai.backends.registry import LocalOptions
from wai.catalog.entries import ModelSpec
from wai.commands.batch.output import Earlier, LineWriter, open_output, read_earlier
from wai.commands.batch.progress import ProgressView, Tally
from wai.commands.batch.queued import (
    ASYNC_QUEUE,
    DEFAULT_CHUNK,
    DEFAULT_POLL,
    QueueIds,
    QueueRunner,
    side_file,
)
from wai.commands.batch.records import Record, messages_of, read_records
from wai.commands.batch.runner import BatchRunner, Outcome, Prepared, seeded
from wai.conversation import ReasoningEffort, Timeouts
from wai.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, UsageError
from wai.notices import Notifier
from wai.render.failure_json import error_of
from wai.sampling import Sampling
from wai.schema import Schema
from wai.store.transcript import TranscriptLog
from wai.tokens.budget import FitMode
from wai.turn.planner import TurnAsk, TurnPlanner

# Requests at once to a server (Workers AI, a provider's); sequences decoded together by llama.cpp.
DEFAULT_JOBS = 4
DEFAULT_SEQUENCES = 8


@dataclass(frozen=True, slots=True)
class BatchOptions:
    template: str | None = None
    input: Path | None = None  # None: stdin
    output: Path | None = None  # None: stdout
    resume: bool = False
    unordered: bool = False
    echo: bool = False
    jobs: int | None = None
    model: str | None = None
    system: str | None = None
    max_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    backend: BackendMode = "auto"
    fit: FitMode = "error"
    reasoning_effort: ReasoningEffort | None = None
    schema: Schema | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    local: LocalOptions = field(default_factory=LocalOptions)
    debug: bool = False
    force: bool = False  # past the daily_neurons budget
    log: bool = True  # each record's turn in the transcript log
    queue: bool = False  # through Workers AI's batch queue
    queue_chunk: int = DEFAULT_CHUNK
    queue_poll: float = DEFAULT_POLL


def run_batch(
    options: BatchOptions,
    notifier: Notifier,
    *,
    stdin: TextIO | None = None,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    if options.resume and options.output is None:
        raise UsageError("--resume continues an output file: give it with -o FILE")
    records = read_records(_input_lines(options.input, stdin if stdin is not None else sys.stdin))
    err = stderr or sys.stderr
    backoff = SharedBackoff()
    read_timeout = options.timeouts.read if options.timeouts.read_given else None
    with TurnPlanner.for_user(
        options.local, debug=options.debug, read_timeout=read_timeout, backoff=backoff
    ) as planner:
        target = planner.resolve(options.model, options.backend, sampling=options.sampling)
        if options.queue:
            _check_queue(planner.backends.for_planning(target.backend), target.spec)
        if options.schema is not None:
            planner.backends.for_planning(target.backend).check_schema(
                target.spec, options.schema, planner.catalog
            )
        for warning in planner.warnings(target, planner.windows(target)):
            notifier.warn(warning)
        counter = planner.counter(target)  # opens the backend (loads a local model) once, here
        # llama.cpp decodes the records' sequences together in one batch, on this thread.
        together = planner.backends.for_planning(target.backend).decodes_together
        jobs = options.jobs or (DEFAULT_SEQUENCES if together else DEFAULT_JOBS)

        def ask_for(record: Record) -> TurnAsk:
            messages = messages_of(record, options.template, options.system)
            system = messages[0].content if messages[0].role == "system" else None
            return TurnAsk(
                messages[-1].content,
                messages,
                system=system,
                max_tokens=options.max_tokens,
                sampling=seeded(options.sampling, record.index),
                reasoning_effort=options.reasoning_effort,
                timeouts=options.timeouts,
                fit=options.fit,
                schema=options.schema,
            )

        runner: BatchRunner | QueueRunner
        runner = batch_runner = BatchRunner(planner, target, counter, ask_for, jobs=jobs, together=together)
        if options.queue:
            from wai.backends.workers_ai.backend import WorkersAI

            backend = planner.backends.get(target.backend)
            assert isinstance(backend, WorkersAI)  # _check_queue let only Workers AI by
            ids = QueueIds(
                side_file(options.output) if options.output is not None else None,
                target.spec.id,
                resume=options.resume,
            )
            runner = QueueRunner(
                runner, backend.batch_queue(), ids, chunk=options.queue_chunk, first_poll=options.queue_poll
            )
        # Every record planned before anything is sent or the output file touched: the batch's
        # worst case is checked against the daily budget first.
        record_ids = [record.id for record in records]
        before = (
            read_earlier(options.output, record_ids)
            if options.resume and options.output is not None
            else None
        )
        todo = [record for record in records if before is None or record.index not in before.done]
        prepared = batch_runner.prepare(todo)
        planner.check_batch_allowance(
            [turn for _, turn in prepared.planned], force=options.force, warn=notifier.warn
        )
        with contextlib.ExitStack() as kept:
            if options.output is not None:
                stream, earlier = open_output(options.output, resume=options.resume, ids=record_ids)
                kept.callback(stream.close)
            else:
                stream, earlier = _stdout(stdout), Earlier(frozenset(), 0, broken_tail=False)
            if earlier.broken_tail:
                notifier.warn(f"{options.output}: its last line was cut off (a killed run); asking it again")
            if options.resume:
                notifier.info(f"resuming: {len(earlier.done)} of {len(records)} records answered before")
            log = TranscriptLog(notifier, source="batch", record=options.log)
            kept.callback(log.close)
            return _play(options, runner, prepared, len(todo), LineWriter(stream), log, notifier, err)


def _play(
    options: BatchOptions,
    runner: BatchRunner | QueueRunner,
    prepared: Prepared,
    total: int,
    writer: LineWriter,
    log: TranscriptLog,
    notifier: Notifier,
    err: TextIO,
) -> int:
    tally = Tally(total=total)
    indexes = sorted([o.record.index for o in prepared.failed] + [r.index for r, _ in prepared.planned])
    order = _Order(indexes, ordered=not options.unordered)
    interrupted = False
    with ProgressView(tally, err, live=_is_terminal(err), shares_screen=writer.to_terminal) as view:
        if isinstance(runner, QueueRunner):

            def show(status: str) -> None:
                tally.status = status
                view.update()

            runner.on_status = show
        try:
            for outcome in runner.run(prepared):
                tally.add(outcome.ok, *_tokens(outcome))
                if outcome.turn is not None and outcome.result is not None:
                    log.start_conversation()  # each record a conversation of its own, as a `wai ask`
                    outcome.turn.record(log, outcome.result)
                ready = order.ready(outcome)
                if ready:
                    with view.writing():
                        for one in ready:
                            writer.write(line_for(one, options))
                view.update()
        except KeyboardInterrupt:
            interrupted = True
        # Ended records held back for the order (behind one that never ended) are written too.
        with view.writing():
            for held in order.rest():
                writer.write(line_for(held, options))
    notifier.info(tally.summary())
    if interrupted:
        notifier.warn(_resume_advice("interrupted", tally, options))
        return EXIT_INTERRUPTED
    if runner.stopped_by is not None:
        notifier.error(f"stopped: {runner.stopped_by}")
        notifier.warn(_resume_advice("stopped", tally, options))
        return EXIT_FAILURE
    return EXIT_OK if tally.failed == 0 else EXIT_FAILURE


def _check_queue(backend: Backend, spec: ModelSpec) -> None:
    """--queue only for a Workers AI model whose catalog entry lists the batch queue."""
    from wai.backends.workers_ai.backend import WorkersAI

    if not isinstance(backend, WorkersAI):
        raise UsageError(
            f"--queue is Workers AI's batch queue: {spec.id} runs on {backend.title}; run without --queue"
        )
    if ASYNC_QUEUE not in spec.capabilities:
        raise UsageError(
            f"{spec.id} does not take Workers AI's batch queue (its catalog entry lists no "
            f"{ASYNC_QUEUE}): run without --queue, or pick a model that lists it (wai models)"
        )


def _resume_advice(why: str, tally: Tally, options: BatchOptions) -> str:
    left = tally.total - tally.done + tally.failed
    if options.output is not None:
        return (
            f"{why} with {tally.done - tally.failed} of {tally.total} records answered; run the same "
            f"command with --resume to ask the other {left} (answers in {options.output} are kept)"
        )
    return (
        f"{why} with {tally.done - tally.failed} of {tally.total} records answered; with -o FILE, "
        "--resume asks only the records not yet answered"
    )


class _Order:
    """Holds ended records until every one before them has ended (input order), or lets each
    through as it ends (--unordered)."""

    def __init__(self, indexes: Sequence[int], *, ordered: bool) -> None:
        self._ordered = ordered
        self._indexes = list(indexes)
        self._next = 0  # position in _indexes of the next line to write
        self._held: dict[int, Outcome] = {}

    def ready(self, outcome: Outcome) -> list[Outcome]:
        if not self._ordered:
            return [outcome]
        self._held[outcome.record.index] = outcome
        out: list[Outcome] = []
        while self._next < len(self._indexes) and self._indexes[self._next] in self._held:
            out.append(self._held.pop(self._indexes[self._next]))
            self._next += 1
        return out

    def rest(self) -> list[Outcome]:
        held = [self._held[index] for index in sorted(self._held)]
        self._held.clear()
        return held


def line_for(outcome: Outcome, options: BatchOptions) -> dict[str, object]:
    """A record's line: index, id (when it has one), text, json (--schema), finish_reason, usage,
    error, and the record itself (--echo)."""
    record, result = outcome.record, outcome.result
    line: dict[str, object] = {"index": record.index}
    if record.id is not None:
        line["id"] = record.id
    line["text"] = result.text if result is not None else ""
    if options.schema is not None:
        line["json"] = result.parsed if result is not None and outcome.error is None else None
    line["finish_reason"] = result.finish_reason if result is not None else None
    line["usage"] = (
        {
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "exact": result.usage_exact,
        }
        if result is not None
        else None
    )
    error = outcome.error
    line["error"] = None if error is None else {"code": error_of(error)["code"], "message": str(error)}
    if options.echo:
        line["record"] = dict(record.fields)
    return line


def _tokens(outcome: Outcome) -> tuple[int | None, int | None]:
    result = outcome.result
    return (result.prompt_tokens, result.completion_tokens) if result is not None else (None, None)


def _input_lines(path: Path | None, stdin: TextIO) -> list[str]:
    if path is not None:
        try:
            return _lines(path.read_bytes())
        except OSError as error:
            raise UsageError(f"cannot read {path}: {error.strerror or error}") from None
    if stdin is None or stdin.closed or _is_terminal(stdin):
        raise UsageError("wai batch reads its records from a pipe or -i FILE: nothing is piped in")
    data = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read().encode()
    return _lines(data)


def _lines(data: bytes) -> list[str]:
    """The input's lines as JSONL has them: split at each newline only (str.splitlines would also
    split at a form feed or U+2028, which JSON strings may hold raw), a byte-order mark dropped
    (editors on Windows write one, and it would hide the first line's JSON object). A byte that is
    not UTF-8 is kept as a surrogate: its line is that record's error, never a mangled prompt."""
    return data.decode("utf-8-sig", errors="surrogateescape").split("\n")


def _stdout(stdout: BinaryIO | None) -> BinaryIO:
    if stdout is not None:
        return stdout
    sys.stdout.flush()  # the lines go to its bytes beneath: nothing of its own text may follow them
    return sys.stdout.buffer


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):
        return False

"""The turn planner: the one way a command runs a turn, whatever the command.

    planner = TurnPlanner.for_user(local_options, debug=...)     # or TurnPlanner(backends) (serve)
    target = planner.resolve(model_name, "auto", sampling=...)    # which model, which backend
    turn = planner.plan(TurnAsk(prompt, messages, ...), target)  # windows, max_tokens, the Request
    result = planner.play(turn, sink, notifier, words=...)       # streamed into a sink: TurnResult
    turn.record(log, result)                                      # the one transcript write

`wai ask`, `wai chat` and `wai serve` all go through it, so the rules that decide what is sent
live here once: which reasoning effort goes out (`effort_for`), and how the plan of the window
policy becomes the Request (`request_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import TYPE_CHECKING

from wai.backends.backoff import SharedBackoff
from wai.backends.base import BackendMode, BackendName
from wai.backends.registry import Backends, LocalOptions, backend_class, choose, resolve_model
from wai.backends.request import Request
from wai.catalog.entries import Catalog, ModelSpec
from wai.conversation import Message, ReasoningEffort, Timeouts
from wai.errors import UsageError
from wai.events import Event
from wai.notices import Notifier
from wai.render.base import Sink
from wai.sampling import Sampling
from wai.settings import UserConfig
from wai.store.transcript import TranscriptLog
from wai.tokens.budget import FitMode, Plan, plan_request
from wai.tokens.counters import RawCounter, TokenCounter
from wai.turn.play import COMMAND_LINE_WORDS, TurnWords, play_turn
from wai.turn.stream import TurnStream, stream_turn, turn_info
from wai.turn_result import TurnResult

if TYPE_CHECKING:
    from wai.schema import Schema  # only with --schema, imported by the command that reads it


@dataclass(frozen=True, slots=True)
class TurnAsk:
    """What a command asks of one turn, before any window is applied.

    prompt: the new text of the user, as the transcript keeps it; messages: the whole conversation
    to send, system prompt first and the prompt last. fit and keep_start: what the window policy
    may cut of a prompt too long (`--fit`; a typed question before piped text is never cut).
    """

    prompt: str
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    reasoning_effort: ReasoningEffort | None = None
    raw: bool = False  # the prompt is the whole prompt, sent verbatim: no chat template
    stream: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    fit: FitMode = "error"
    keep_start: int = 0
    schema: Schema | None = None  # --schema: the reply must be JSON that satisfies it
    affinity: str | None = None  # the conversation's prompt-caching key (TranscriptLog.affinity)


@dataclass(frozen=True, slots=True)
class Target:
    """The model a turn runs, and the backend that runs it."""

    spec: ModelSpec
    backend: BackendName


@dataclass(frozen=True, slots=True)
class PlannedTurn:
    """A turn ready to play: the window plan, the Request made from it, and what was said of it.

    windows: what the plan was made within; counter: how the prompt was counted; effort_unsent:
    why the reasoning effort asked for is not sent (None when it is, or none was asked).
    """

    ask: TurnAsk
    target: Target
    windows: ModelSpec
    counter: TokenCounter
    plan: Plan
    request: Request
    effort_unsent: str | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What to warn of before the turn: cuts and a lowered max_tokens, an effort not sent."""
        notices = tuple(self.plan.notices)
        return (*notices, self.effort_unsent) if self.effort_unsent else notices

    def record(self, log: TranscriptLog, result: TurnResult, *, replaces: int | None = None) -> int | None:
        """Keep the turn in the transcript (complete, interrupted or failed); its id, or None."""
        ask = self.ask
        return log.record_turn(
            ask.prompt, result, system=ask.system, sampling=ask.sampling, replaces=replaces
        )


class TurnPlanner:
    """Resolves, plans and plays turns on backends it builds once (a loaded model serves every turn).

    Use as a context manager, or `close()` it: the backends it built are freed then.
    """

    def __init__(
        self, backends: Backends, *, config: UserConfig | None = None, catalog: Catalog | None = None
    ) -> None:
        self.backends = backends
        self.config = config
        self.catalog = catalog

    @classmethod
    def for_user(
        cls,
        local: LocalOptions,
        *,
        debug: bool = False,
        read_timeout: float | None = None,
        backoff: SharedBackoff | None = None,
    ) -> TurnPlanner:
        """A planner with the user's configuration, credentials and catalog; `read_timeout`:
        --read-timeout when given (it bounds a provider's small requests too); `backoff`: one
        back-off for all the turns the planner plays at once (`wai batch`)."""
        from wai.catalog.entries import load_catalog
        from wai.settings import load_credentials, load_user_config

        config = load_user_config()
        credentials = load_credentials(config)
        backends = Backends(
            credentials, local, debug=debug, read_timeout=read_timeout, config=config, backoff=backoff
        )
        return cls(backends, config=config, catalog=load_catalog())

    def __enter__(self) -> TurnPlanner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.backends.close()

    # --- resolve ------------------------------------------------------------------------------

    def resolve(
        self, name: str | None, mode: BackendMode, *, sending: bool = True, sampling: Sampling | None = None
    ) -> Target:
        """The model `name` names (the default model for None) and the backend that runs it.

        `sending`: False for a count or a dry run, which need no credentials or weights.
        `sampling`: options the backend that would run the model cannot take are a usage error,
        said before anything missing is (Workers AI's ranges are its own).
        """
        if self.catalog is None or self.config is None:
            raise ValueError("this planner has no catalog to resolve model names with")
        credentials = self.backends.settings.credentials
        spec = resolve_model(name, self.catalog, self.config, credentials, self.backends)
        if sampling is not None:
            refusal = self.refusal(Target(spec, choose(spec, mode, credentials, sending=False)), sampling)
            if refusal is not None:
                raise UsageError(refusal)
        return Target(spec, choose(spec, mode, credentials, sending=sending))

    def refusal(self, target: Target, sampling: Sampling) -> str | None:
        """Why the target's backend cannot run these sampling options, None when it can."""
        return self.backends.for_planning(target.backend).sampling_refusal(sampling)

    # --- plan ---------------------------------------------------------------------------------

    def counter(self, target: Target, *, built: bool = True) -> TokenCounter:
        """How the target's backend counts a prompt. `built`: the built backend's own counter
        (locally the very model that answers); else one that builds nothing (a dry run, a count:
        the vocabulary alone counts the same)."""
        if built:
            return self.backends.counter(target.spec, target.backend)
        return self.backends.for_planning(target.backend).counter(target.spec)

    def windows(self, target: Target) -> ModelSpec:
        """The windows a turn on the target is planned within (locally, within the file's context)."""
        return self.backends.for_planning(target.backend).windows(target.spec)

    def warnings(self, target: Target, windows: ModelSpec) -> list[str]:
        """What the target's backend warns of before a turn planned within `windows` (windows
        assumed, a file at odds with its catalog entry)."""
        return self.backends.for_planning(target.backend).warnings(windows)

    def plan(
        self,
        ask: TurnAsk,
        target: Target,
        *,
        counter: TokenCounter | None = None,
        windows: ModelSpec | None = None,
    ) -> PlannedTurn:
        """Fit the turn into the windows and make its Request; a WindowError when it cannot fit.

        `counter`, `windows`: the caller's, where it keeps its own (the chat session counts with
        its choice's counter); by default the backend's.
        """
        if ask.schema is not None:
            self.backends.for_planning(target.backend).check_schema(target.spec, ask.schema, self.catalog)
        counter = counter or self.counter(target)
        if ask.raw:
            counter = RawCounter(counter)
        windows = windows or self.windows(target)
        plan = plan_request(
            windows,
            ask.messages,
            counter,
            requested_max_tokens=ask.max_tokens,
            fit=ask.fit,
            keep_start=ask.keep_start,
        )
        effort, unsent = effort_for(target.spec, target.backend, ask.reasoning_effort)
        request = request_for(
            target.spec,
            plan,
            sampling=ask.sampling,
            timeouts=ask.timeouts,
            stream=ask.stream,
            reasoning_effort=effort,
            raw=ask.raw,
            schema=ask.schema,
            affinity=ask.affinity,
        )
        return PlannedTurn(ask, target, windows, counter, plan, request, unsent)

    def check_allowance(self, turn: PlannedTurn, *, force: bool, warn: Callable[[str], None]) -> None:
        """The `daily_neurons` budget, on a backend that bills in neurons: a warning when the
        turn's worst case could pass it, a UsageError once it is spent (unless `force`)."""
        if not backend_class(turn.target.backend).bills_neurons:
            return
        from wai.turn.allowance import check_daily_neurons

        check_daily_neurons(turn.request, self.config, force=force, warn=warn)

    def check_batch_allowance(
        self, turns: Sequence[PlannedTurn], *, force: bool, warn: Callable[[str], None]
    ) -> None:
        """`check_allowance` for a batch's turns together, before the first is sent: their worst
        cases summed."""
        billed = [turn.request for turn in turns if backend_class(turn.target.backend).bills_neurons]
        from wai.turn.allowance import check_daily_neurons_of

        check_daily_neurons_of(billed, self.config, force=force, warn=warn)

    # --- play ---------------------------------------------------------------------------------

    def play(
        self,
        turn: PlannedTurn,
        sink: Sink,
        notifier: Notifier,
        *,
        words: TurnWords = COMMAND_LINE_WORDS,
        warned: tuple[str, ...] = (),
    ) -> TurnResult:
        """Stream the turn's reply into `sink` on its backend; what went wrong is said on stderr.

        `warned`: what the caller warned of while planning, for the turn's info (--json).
        """
        backend = self.backends.get(turn.target.backend)
        return play_turn(
            backend, turn.request, sink, notifier, prompt_exact=turn.plan.exact, words=words, warned=warned
        )

    def run(self, turn: PlannedTurn, sink: Sink, *, events: Iterator[Event] | None = None) -> TurnResult:
        """Stream the turn's reply into `sink` and return the result, saying nothing on stderr: for
        a caller that reports on its own terms (wai serve answers over HTTP).

        `events`: the backend's stream of the turn's request, when the caller opened it itself.
        """
        backend = self.backends.get(turn.target.backend)
        info = turn_info(backend, turn.request, prompt_exact=turn.plan.exact)
        return stream_turn(backend, turn.request, sink, info, events=events)

    def stream_into(self, turn: PlannedTurn, sink: Sink) -> TurnStream:
        """The turn's result, to be built from events the caller feeds as they come (wai serve
        --parallel decodes several turns together and hands each its step's events)."""
        backend = self.backends.get(turn.target.backend)
        return TurnStream(turn.request, sink, turn_info(backend, turn.request, prompt_exact=turn.plan.exact))


def request_for(
    spec: ModelSpec,
    plan: Plan,
    *,
    sampling: Sampling,
    timeouts: Timeouts,
    stream: bool = True,
    reasoning_effort: ReasoningEffort | None = None,
    raw: bool = False,
    schema: Schema | None = None,
    affinity: str | None = None,
) -> Request:
    """The Request a window plan makes: within the windows the plan held (a server may tell
    smaller ones than the model's)."""
    if plan.windows is not None:
        held = plan.windows
        spec = replace(
            spec,
            context_window=held.context_window,
            max_output=held.max_output,
            total_context=held.total_context,
            source=held.source,  # where the windows come from: no longer an assumption, say
            assumed_windows=held.assumed_windows,
        )
    return Request(
        model=spec,
        messages=plan.messages,
        max_tokens=plan.max_tokens,
        sampling=sampling,
        stream=stream,
        timeouts=timeouts,
        prompt_tokens=plan.prompt_tokens,
        reasoning_effort=reasoning_effort,
        raw=raw,
        schema=schema,
        affinity=affinity,
    )


def effort_for(
    spec: ModelSpec, backend_name: BackendName, effort: ReasoningEffort | None
) -> tuple[ReasoningEffort | None, str | None]:
    """The reasoning effort to send to this model, and why the one asked for is not sent (or None).

    Only models the catalog marks `reasoning = true` take one, and only on a backend that sends it
    (Workers AI, an OpenAI-compatible server): other models would refuse the field or ignore it,
    and llama.cpp has no such setting.
    """
    if effort is None:
        return None, None
    if not backend_class(backend_name).reasoning_effort:
        return None, (
            f"the reasoning effort ({effort}) is not sent: the {backend_name} backend has no such setting"
        )
    if not spec.reasoning:
        return None, (
            f"the reasoning effort ({effort}) is not sent: {spec.id} is not a reasoning model in the "
            "catalog (set reasoning = true for it in models.toml if it is one)"
        )
    return effort, None

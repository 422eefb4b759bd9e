"""The state of one `wai chat` session and the turns it runs; no terminal handling here.

One Backends for the whole session, so a local model loaded by the first turn serves every
later one. The conversation keeps every turn; the window policy (budget.plan_request) decides
per turn what of it is sent.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import TextIO

from wai.backends.base import BackendMode, BackendName
from wai.backends.registry import Backends, LocalOptions, backend_class
from wai.catalog.entries import Catalog, ModelSpec, load_catalog
from wai.conversation import Message, ReasoningEffort, Timeouts
from wai.errors import UsageError, WindowError
from wai.notices import Notifier
from wai.render.base import Sink
from wai.render.choose import ColorMode
from wai.sampling import Sampling
from wai.schema import Schema
from wai.settings import Credentials, UserConfig, load_credentials, load_user_config
from wai.store.database import StoredTurn
from wai.store.transcript import Continued, TranscriptLog, answered
from wai.tokens.budget import Plan, input_limit, trim_limit
from wai.tokens.counters import TokenCounter
from wai.turn.planner import Target, TurnAsk, TurnPlanner
from wai.turn.play import TurnWords, sink_for

# How a chat turn names its remedies: with slash commands, not command-line options.
CHAT_WORDS = TurnWords(
    more="/set max_tokens",
    effort="lower the effort with /set reasoning_effort",
    interrupted="interrupted; the partial reply is kept in the conversation",
)


@dataclass(frozen=True, slots=True)
class ChatOptions:
    """What `wai chat` was started with.

    continue_last: resume the latest logged conversation (`-c`); cid: resume that one (`--cid`).
    log: False for `--no-log` (nothing new is written to the transcript database).
    """

    model: str | None = None
    system: str | None = None
    backend: BackendMode = "auto"
    continue_last: bool = False
    cid: str | None = None
    vi: bool = False
    max_tokens: int | None = None
    sampling: Sampling = field(default_factory=Sampling)
    color: ColorMode = "auto"
    stats: bool | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    local: LocalOptions = field(default_factory=LocalOptions)
    log: bool = True
    debug: bool = False
    force: bool = False  # --force: send even when the daily_neurons budget is spent
    reasoning_effort: ReasoningEffort | None = None
    show_thinking: bool = False
    schema: Schema | None = None  # --schema, --schema-multi: every reply must satisfy it (/schema)


@dataclass(slots=True)
class ChatTurn:
    prompt: str
    reply: str
    model: str
    backend: str
    finish_reason: str | None = None
    error: str | None = None
    stored_id: int | None = None

    @property
    def interrupted(self) -> bool:
        return self.finish_reason == "interrupted"

    def messages(self) -> tuple[Message, Message]:
        return Message("user", self.prompt), Message("assistant", self.reply)


def chat_turn(stored: StoredTurn) -> ChatTurn:
    data = stored.data
    return ChatTurn(
        prompt=data.prompt,
        reply=data.reply,
        model=data.model,
        backend=data.backend,
        finish_reason=data.finish_reason,
        error=data.error,
        stored_id=stored.id,
    )


class ChatSession:
    def __init__(
        self,
        options: ChatOptions,
        notifier: Notifier,
        log: TranscriptLog,
        *,
        out: TextIO | None = None,
    ) -> None:
        self.options = options
        self.notifier = notifier
        self.log = log
        self.out = out or sys.stdout
        self.config: UserConfig = load_user_config()
        self.credentials: Credentials | None = load_credentials(self.config)
        self.catalog: Catalog = load_catalog()
        self.planner = TurnPlanner(
            Backends(
                self.credentials,
                options.local,
                debug=options.debug,
                read_timeout=options.timeouts.read if options.timeouts.read_given else None,
                config=self.config,
            ),
            config=self.config,
            catalog=self.catalog,
        )
        self.system = options.system
        self.sampling = options.sampling
        self.max_tokens = options.max_tokens
        self.reasoning_effort: ReasoningEffort | None = options.reasoning_effort
        self.schema: Schema | None = options.schema
        self._effort_told: str | None = None  # the last "not sent" said, so it is said once
        self.mode: BackendMode = options.backend
        self.turns: list[ChatTurn] = []
        self.continued: Continued | None = None
        model_name = options.model
        if options.continue_last or options.cid is not None:
            self.continued = log.continue_conversation(options.cid)
            model_name = model_name or self.continued.model
            if self.system is None:
                self.system = self.continued.system
            self.turns = [chat_turn(t) for t in self.continued.turns if answered(t.data)]
        self.spec, self.backend_name, self.counter = self._choose(model_name, self.mode)
        if options.schema is not None:  # refused before the REPL opens when the backend cannot hold it
            self.set_schema(options.schema)
        self._used: int | None = None
        self._windows: tuple[tuple[ModelSpec, BackendName], ModelSpec] | None = None
        self.stopped_before_reply = False  # the last send was stopped by Ctrl-C before any reply
        # Set by the REPL: quiets the keyboard while a reply streams.
        self.during_reply: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext

    def close(self) -> None:
        """Free what the session's backends hold (a loaded model, a connection)."""
        self.planner.close()

    def warm_up(self) -> None:
        """Import what the first turn needs (HTTP client or llama.cpp, the panel) while the user types.

        Only imports: objects are still made on the main thread, where the turn runs.
        """
        import importlib

        backend_modules = backend_class(self.backend_name).warm_modules
        for name in (*backend_modules, "wai.render.panel", "rich.console", "rich.live"):
            with contextlib.suppress(Exception):  # the turn itself will report a real problem
                importlib.import_module(name)

    # --- choices --------------------------------------------------------------------------

    def _choose(self, name: str | None, mode: BackendMode) -> tuple[ModelSpec, BackendName, TokenCounter]:
        target = self.planner.resolve(name, mode)
        # Counted as a plan is, nothing opened: a local model's vocabulary, not the model.
        return target.spec, target.backend, self.planner.counter(target, built=False)

    @property
    def target(self) -> Target:
        return Target(self.spec, self.backend_name)

    @property
    def windows(self) -> ModelSpec:
        """The windows turns are planned with: the entry's, within what its file holds locally."""
        key = (self.spec, self.backend_name)
        if self._windows is None or self._windows[0] != key:
            self._windows = (key, self.planner.windows(self.target))  # read once per choice
        return self._windows[1]

    def set_model(self, name: str) -> None:
        self.spec, self.backend_name, self.counter = self._choose(name, self.mode)
        self._used = None

    def set_backend(self, mode: BackendMode) -> None:
        self.spec, self.backend_name, self.counter = self._choose(self.spec.id, mode)
        self.mode = mode
        self._used = None

    def set_system(self, text: str | None) -> None:
        self.system = text
        self._used = None

    def set_sampling(self, sampling: Sampling) -> None:
        self.sampling = sampling

    def set_max_tokens(self, value: int | None) -> None:
        self.max_tokens = value

    def set_schema(self, schema: Schema | None) -> None:
        """Hold the next replies to `schema` (None: free text again); refused, and left as it was,
        when the current backend cannot hold a reply to it."""
        if schema is not None:
            self.planner.backends.for_planning(self.backend_name).check_schema(
                self.spec, schema, self.catalog
            )
        self.schema = schema

    def set_reasoning_effort(self, value: ReasoningEffort | None) -> None:
        self.reasoning_effort = value
        self._effort_told = None

    def clear(self) -> None:
        """A new conversation: no turns, and the next one starts a new transcript."""
        self.turns = []
        self.continued = None
        self.log.start_conversation()
        self._used = None

    # --- figures --------------------------------------------------------------------------

    def messages(self, turns: list[ChatTurn] | None = None) -> tuple[Message, ...]:
        system = (Message("system", self.system),) if self.system else ()
        chosen = self.turns if turns is None else turns
        return (*system, *(m for turn in chosen for m in turn.messages()))

    def context_used(self) -> int:
        """Prompt tokens of the conversation so far (system and every turn), as the model counts them."""
        if self._used is None:
            messages = self.messages()
            self._used = self.counter.count_prompt(messages) if messages else 0
        return self._used

    def input_limit(self) -> int:
        """Past this many prompt tokens the next turn drops the oldest ones (room kept for the reply)."""
        windows = self.windows
        return min(input_limit(windows, self.max_tokens), trim_limit(windows, self.max_tokens))

    def plan_next(self) -> Plan:
        """The plan the next message would get, were it empty: what the window policy drops then
        (/budget). Planned as `send` plans, within the same windows."""
        ask = TurnAsk("", (*self.messages(), Message("user", "")), max_tokens=self.max_tokens)
        return self.planner.plan(ask, self.target, counter=self.counter, windows=self.windows).plan

    # --- turns ----------------------------------------------------------------------------

    def send(self, prompt: str, *, replaces: int | None = None) -> ChatTurn | None:
        """Run one turn. The turn joins the conversation unless nothing came back.

        Expected failures are reported on stderr and leave the session as it was; only
        KeyboardInterrupt outside the stream (while planning or loading) propagates.
        """
        refusal = self._unsupported()
        if refusal is not None:
            self.notifier.error(refusal)
            self.notifier.info("the message was not sent; change the setting with /set")
            return None
        ask = TurnAsk(
            prompt,
            (*self.messages(), Message("user", prompt)),
            system=self.system,
            max_tokens=self.max_tokens,
            sampling=self.sampling,
            reasoning_effort=self.reasoning_effort,
            timeouts=self.options.timeouts,
            affinity=self.log.affinity(),
            schema=self.schema,
        )
        try:
            turn = self.planner.plan(ask, self.target, counter=self.counter, windows=self.windows)
        except UsageError as error:  # a schema this model's backend cannot hold (after /model)
            self.notifier.error(str(error))
            self.notifier.info("the message was not sent; change the schema with /schema, or /schema off")
            return None
        except WindowError as error:
            self.notifier.error(error.message)
            self.notifier.info(
                "the message was not sent; shorten it, or switch to a model with a larger window (/model)"
            )
            return None
        try:
            self.planner.check_allowance(turn, force=self.options.force, warn=self.notifier.warn)
        except UsageError as over_budget:
            self.notifier.error(over_budget.message)
            self.notifier.info("the message was not sent; start wai chat with --force to go on")
            return None
        for notice in turn.plan.notices:
            self.notifier.warn(notice)
        unsent = turn.effort_unsent
        if unsent and unsent != self._effort_told:  # said once, not before every turn
            self.notifier.warn(unsent)
        self._effort_told = unsent
        with self.during_reply():
            result = self.planner.play(turn, self._sink(), self.notifier, words=CHAT_WORDS)
        kept = result.answered
        self.stopped_before_reply = not kept and result.finish_reason == "interrupted"
        said = ChatTurn(
            prompt=prompt,
            reply=result.text,
            model=result.info.model,
            backend=result.info.backend,
            finish_reason=result.finish_reason,
            error=result.error_text,
        )
        if kept:  # before the transcript write, which a Ctrl-C may cut short
            self.turns.append(said)
            self._used = None
        said.stored_id = turn.record(self.log, result, replaces=replaces if kept else None)
        return said if kept else None

    def retry(self) -> ChatTurn | None:
        """Regenerate the last reply; the last turn stays as it was when the new one fails. The
        earlier reply is kept in the transcript as an alternative (/alt)."""
        if not self.turns:
            self.notifier.error("nothing to retry yet")
            return None
        return self._answer_again(self.turns[-1].prompt)

    def edit(self, prompt: str) -> ChatTurn | None:
        """Replace the last message with `prompt` and answer it (/edit); the earlier exchange is
        kept in the transcript as an alternative."""
        if not self.turns:
            self.notifier.error("nothing to edit yet: send a message first")
            return None
        return self._answer_again(prompt)

    def _answer_again(self, prompt: str) -> ChatTurn | None:
        last = self.turns.pop()
        before = len(self.turns)
        self._used = None
        try:
            return self.send(prompt, replaces=last.stored_id)
        finally:
            if len(self.turns) == before:  # no new reply joined the conversation
                self.turns.append(last)
                self._used = None

    def undo(self) -> ChatTurn | None:
        """Take the last exchange out of the conversation (/undo); the transcript keeps it."""
        if not self.turns:
            self.notifier.error("nothing to undo")
            return None
        last = self.turns.pop()
        self._used = None
        self.log.undo()
        return last

    def alternatives(self) -> list[StoredTurn]:
        """The alternatives of the last exchange (its earlier replies and messages), oldest first."""
        return self.log.alternatives() if self.turns else []

    def switch_to(self, chosen: StoredTurn) -> None:
        """Make an alternative the last exchange of the conversation (/alt N)."""
        self.log.switch_to(chosen.id)
        self.turns[-1] = chat_turn(chosen)
        self._used = None

    def fork(self) -> None:
        """Go on in a new conversation from here (/fork): the turns so far are its beginning."""
        self.log.fork()
        self.continued = None

    def _unsupported(self) -> str | None:
        """Why the backend cannot run the current settings, None when it can."""
        return self.planner.refusal(self.target, self.sampling)

    def _sink(self) -> Sink:
        return sink_for(
            self.notifier,
            output="auto",
            color=self.options.color,
            stats=self.options.stats,
            stdout=self.out,
            show_thinking=self.options.show_thinking,
            schema=self.schema is not None,
        )

    def with_sampling(self, **changes: float | int | None) -> Sampling:
        return replace(self.sampling, **changes)  # type: ignore[arg-type]

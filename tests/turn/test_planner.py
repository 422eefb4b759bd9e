"""The turn planner: the rules it holds once (the reasoning effort sent, the Request made from a
plan), and `wai serve` running its turns through it on whatever backend is registered as local."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

from wai.backends.base import Backend, BackendName
from wai.backends.registry import Backends, BackendSettings, LocalOptions, registered
from wai.backends.request import Request
from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.events import Event, Finish, Token, Usage
from wai.serve.jobs import Accepted, Ended, Failed, Item, Job
from wai.serve.protocol import Ask
from wai.serve.worker import Pool
from wai.tokens.counters import EstimatedCounter, TokenCounter
from wai.turn.planner import Target, TurnAsk, TurnPlanner, effort_for


def _spec(path: Path, *, reasoning: bool = False) -> ModelSpec:
    path.write_bytes(b"weights")
    return ModelSpec(
        id="@cf/test/thinker",
        context_window=300,
        max_output=100,
        total_context=400,
        remote=False,
        gguf=str(path),
        reasoning=reasoning,
    )


class _Recorded(Backend):
    """A local backend that answers "Hello" and keeps the requests it was given; `made`: every one
    the registry made."""

    title = "llama.cpp"
    made: ClassVar[list[_Recorded]] = []

    def __init__(self, name: BackendName, settings: BackendSettings) -> None:
        super().__init__(name, settings)
        self.requests: list[Request] = []
        self.closed = False
        _Recorded.made.append(self)

    def serves(self, spec: ModelSpec) -> bool:
        return spec.gguf is not None

    def unavailable(self, spec: ModelSpec) -> str | None:
        return None

    def require(self, spec: ModelSpec) -> None:
        return None

    def remedy(self, spec: ModelSpec) -> str:
        return ""

    def stream(self, request: Request) -> Iterator[Event]:
        self.requests.append(request)
        yield Token("Hel")
        yield Token("lo")
        yield Usage(prompt_tokens=9, completion_tokens=2, exact=True)
        yield Finish("stop")

    def precision(self, request: Request) -> str | None:
        return "q8_0"

    def describe(self) -> dict[str, object]:
        return {}

    def counter(self, spec: ModelSpec, *, running: bool = False) -> TokenCounter:
        return EstimatedCounter()

    def close(self) -> None:
        self.closed = True


def _serve(spec: ModelSpec, ask: Ask) -> tuple[list[Item], _Recorded]:
    """One request through wai serve's pool, with _Recorded registered as the local backend; the
    items the client got, and the backend the registry made."""

    async def drive() -> list[Item]:
        pool = Pool(
            {spec.id: spec},
            max_queue=1,
            make_planner=lambda: TurnPlanner(Backends(None, LocalOptions())),
        )
        job = Job(ask, asyncio.get_running_loop())
        pool.workers[spec.id].submit(job)
        items: list[Item] = []
        while not items or not isinstance(items[-1], Ended | Failed):
            items.append(await asyncio.wait_for(job.next(), 10))
        pool.close()
        return items

    _Recorded.made.clear()
    with registered("local", _Recorded):
        items = asyncio.run(drive())
    (backend,) = _Recorded.made
    return items, backend


def test_wai_serve_runs_its_turns_on_the_backend_registered_as_local(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "thinker.gguf")
    ask = Ask(model=spec, messages=(Message("user", "hi"),), max_tokens=20, stream=True)
    items, backend = _serve(spec, ask)
    assert isinstance(items[0], Accepted) and items[0].precision == "q8_0"
    assert [item.text for item in items if isinstance(item, Token)] == ["Hel", "lo"]
    end = items[-1]
    assert isinstance(end, Ended) and end.cut is None and end.result is not None
    assert (end.result.text, end.result.completion_tokens, end.result.finish_reason) == ("Hello", 2, "stop")
    assert backend.requests[0].max_tokens == 20
    assert backend.closed  # the pool closed what the registry built


def test_wai_serve_follows_the_planners_rule_for_the_reasoning_effort(tmp_path: Path) -> None:
    # llama.cpp has no such setting: wai serve does not pass one on to it, as wai ask does not.
    spec = _spec(tmp_path / "thinker.gguf", reasoning=True)
    ask = Ask(model=spec, messages=(Message("user", "hi"),), max_tokens=20, reasoning_effort="high")
    _, backend = _serve(spec, ask)
    assert backend.requests[0].reasoning_effort is None


def test_the_effort_is_sent_only_to_a_reasoning_model_on_a_backend_that_sends_it(tmp_path: Path) -> None:
    thinker = _spec(tmp_path / "thinker.gguf", reasoning=True)
    plain = dataclasses.replace(thinker, reasoning=False)
    assert effort_for(thinker, "remote", "low") == ("low", None)
    assert effort_for(thinker, "remote", None) == (None, None)
    assert effort_for(thinker, "local", "low") == (
        None,
        "the reasoning effort (low) is not sent: the local backend has no such setting",
    )
    effort, unsent = effort_for(plain, "openai", "high")
    assert effort is None and unsent is not None and "not a reasoning model" in unsent


def test_a_plan_becomes_one_request_with_what_was_asked(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "thinker.gguf")
    messages: Sequence[Message] = (Message("system", "be brief"), Message("user", "hi"))
    with TurnPlanner(Backends(None, LocalOptions())) as planner:
        turn = planner.plan(
            TurnAsk("hi", tuple(messages), system="be brief", max_tokens=30, reasoning_effort="low"),
            Target(spec, "local"),
            counter=EstimatedCounter(),
            windows=spec,
        )
    assert turn.request.messages == tuple(messages)
    assert turn.request.max_tokens == 30
    assert turn.request.prompt_tokens == turn.plan.prompt_tokens
    assert turn.request.reasoning_effort is None
    assert turn.warnings == (turn.effort_unsent,)

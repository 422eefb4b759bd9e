"""Fixtures for backend tests: the loopback Workers AI server and a backend pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.workers_ai_server import WorkersAIServer, workers_ai_server
from wai.backends.request import Request
from wai.backends.workers_ai.stream import WorkersAIStream
from wai.catalog.entries import ModelSpec
from wai.conversation import Message, ReasoningEffort, Timeouts
from wai.errors import WaiError
from wai.events import Event, Token
from wai.sampling import Sampling
from wai.settings import Credentials

__all__ = ["workers_ai_server"]

# Distinctive, so a leak anywhere is unmistakable.
API_TOKEN = "tok-SECRET-9f8e7d6c5b4a-DO-NOT-LEAK"
ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
MODEL = ModelSpec(
    id="@cf/meta/llama-2-7b-chat-int8",
    context_window=2048,
    max_output=1800,
    total_context=4096,
    remote=True,
    precision="q8_0",
)


def make_request(
    text: str = "where is new york?",
    *,
    max_tokens: int = 100,
    stream: bool = True,
    sampling: Sampling | None = None,
    read_timeout: float = 5.0,
    reasoning_effort: ReasoningEffort | None = None,
) -> Request:
    return Request(
        model=MODEL,
        messages=(Message("user", text),),
        max_tokens=max_tokens,
        sampling=sampling or Sampling(),
        stream=stream,
        timeouts=Timeouts(connect=2.0, read=read_timeout),
        reasoning_effort=reasoning_effort,
    )


@dataclass
class Outcome:
    """Everything one turn produced: the events that arrived, and the error that ended it, if any."""

    events: list[Event] = field(default_factory=list)
    error: WaiError | None = None

    @property
    def text(self) -> str:
        return "".join(event.text for event in self.events if isinstance(event, Token))


@dataclass
class Harness:
    server: WorkersAIServer
    backend: WorkersAIStream
    sleeps: list[float]
    debug: list[str]

    def run(self, request: Request | None = None) -> Outcome:
        outcome = Outcome()
        try:
            for event in self.backend.stream(request or make_request()):
                outcome.events.append(event)
        except WaiError as exc:
            outcome.error = exc
        return outcome

    def rebuild(self, **options: object) -> WorkersAIStream:
        """A backend with other retry settings, against the same server."""
        self.backend.close()
        self.backend = _backend(self.server.base_url, self.sleeps, self.debug, **options)
        return self.backend


def _backend(base_url: str, sleeps: list[float], debug: list[str], **options: object) -> WorkersAIStream:
    settings: dict[str, object] = {"base_delay": 0.01, "max_delay": 0.05, "max_total_wait": 5.0}
    settings.update(options)
    return WorkersAIStream(
        Credentials(account_id=ACCOUNT_ID, api_token=API_TOKEN, base_url=base_url),
        debug_log=debug.append,
        sleep=sleeps.append,  # recorded, not slept: the server's pace is what the tests exercise
        **settings,  # type: ignore[arg-type]
    )


@pytest.fixture
def harness(workers_ai_server: WorkersAIServer) -> Iterator[Harness]:
    sleeps: list[float] = []
    debug: list[str] = []
    backend = _backend(workers_ai_server.base_url, sleeps, debug)
    harness = Harness(workers_ai_server, backend, sleeps, debug)
    yield harness
    harness.backend.close()
    assert not workers_ai_server.errors, workers_ai_server.errors[0]

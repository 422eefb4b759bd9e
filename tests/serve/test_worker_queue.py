"""The queue in front of a served model's thread, as its refusals describe it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from wai.catalog.entries import ModelSpec
from wai.conversation import Message
from wai.serve.jobs import Job
from wai.serve.protocol import ApiFailure, Ask
from wai.serve.worker import ModelWorker
from wai.turn.planner import TurnPlanner

SPEC = ModelSpec(id="@cf/test/busy", context_window=300, max_output=100, total_context=400, remote=False)


@pytest.fixture
def held() -> Iterator[threading.Event]:
    """Released at the end: until then the model's thread is held before its first request."""
    release = threading.Event()
    yield release
    release.set()


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_refusal_counts_requests_not_yet_picked_up_as_decoding_while_slots_are_free(
    held: threading.Event, parallel: int, tmp_path: Path
) -> None:
    weights = tmp_path / "busy.gguf"
    weights.write_bytes(b"")  # present: the thread goes on to its planner, which holds it

    def make_planner() -> TurnPlanner:
        held.wait()
        raise RuntimeError("the test ends here")

    spec = replace(SPEC, gguf=str(weights))
    worker = ModelWorker(spec, max_queue=2, make_planner=make_planner, parallel=parallel)
    loop = asyncio.new_event_loop()
    try:
        ask = Ask(model=spec, messages=(Message("user", "hi"),), max_tokens=5)
        for _ in range(parallel + 2):
            worker.submit(Job(ask, loop))
        with pytest.raises(ApiFailure) as refused:
            worker.submit(Job(ask, loop))
    finally:
        held.set()
        worker.stop_accepting("the test ends")
        worker.join(5)
        loop.close()
    decoding = "a request" if parallel == 1 else f"{parallel} requests"
    assert refused.value.status == 429
    assert f"is decoding {decoding} and 2 more wait (at most 2)" in refused.value.message


def _unplanned() -> TurnPlanner:
    raise AssertionError("the request was planned before this test")


def test_a_request_that_fails_is_said_in_the_servers_log_not_only_to_its_client() -> None:
    """Too little memory for the slots reaches the client as a 500; whoever runs the server, who
    can lower --parallel, reads it in the log too."""
    from wai.errors import BackendError
    from wai.serve.jobs import Failed, Item
    from wai.turn_result import TurnInfo, TurnResult

    said: list[str] = []
    worker = ModelWorker(SPEC, max_queue=2, make_planner=_unplanned, log=said.append, parallel=4)
    loop = asyncio.new_event_loop()
    try:
        job = Job(Ask(model=SPEC, messages=(Message("user", "hi"),), max_tokens=5), loop)
        failure = BackendError(
            "not enough memory for 4 sequences of 4096 tokens on busy.gguf",
            hint="serve fewer requests at once (--parallel)",
        )
        result = TurnResult(TurnInfo(SPEC.id, "local", "q8_0", 300, 100, 5), error=failure)
        handed: list[Item] = []
        worker.conclude(job, result, handed.append)
    finally:
        loop.close()
    [item] = handed
    assert isinstance(item, Failed) and item.failure.status == 500
    assert said == [
        "@cf/test/busy: a request failed: not enough memory for 4 sequences of 4096 tokens on "
        "busy.gguf (serve fewer requests at once (--parallel))"
    ]
    assert worker.stats.failed == 1

"""`wai batch --queue`: the records through Workers AI's batch queue instead of one request each.

Every record is planned as `wai ask` would plan it (one over its window is its own error, never
sent); the planned requests go in chunks (`--queue-chunk` records, each chunk's body under the
queue's 10 MB) to `ai/run/MODEL?queueRequest=true`, each with its record's index as its
`external_reference`; then each chunk's request id is polled, with a growing wait, until its
responses come. A response is read as the stream of the same request would have been, so its line
is the line a normal batch writes.

The request ids are kept in a side file (`-o FILE` -> FILE.queue.json), written before any poll:
after a restart, `--resume` polls the ids of the records not yet answered instead of asking
them again. A record the queue failed leaves the side file, so `--resume` asks it anew.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wai.commands.batch.records import Record
from wai.commands.batch.runner import BatchRunner, Outcome, Prepared, QuietSink
from wai.errors import BackendError, OutputError, RetryableError, UsageError, WaiError
from wai.turn.planner import PlannedTurn
from wai.wording import counted

if TYPE_CHECKING:
    from wai.backends.workers_ai.stream import WorkersAIStream

ASYNC_QUEUE = "async_queue"  # the catalog's flag of a model the batch queue takes
DEFAULT_CHUNK = 100
MAX_PAYLOAD = 9_500_000  # bytes of one queued request's body: the queue takes under 10 MB
DEFAULT_POLL = 2.0  # seconds before the first poll; each wait after is half as long again
MOST_POLL_WAIT = 30.0
POLL_TRIES = 5  # polls in a row that may fail (a network blip) before the records are errors


def side_file(output: Path) -> Path:
    return output.with_name(output.name + ".queue.json")


class QueueIds:
    """The side file: which records each queued request id carries, for --resume to poll."""

    def __init__(self, path: Path | None, model: str, *, resume: bool) -> None:
        self._path = path
        self._model = model
        self.pending: dict[str, list[int]] = {}
        if path is not None and resume:
            self._load(path)
        elif path is not None:
            # A new run: an earlier run's ids are of records the output no longer holds, and a
            # later --resume must not poll them for its own.
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                raise OutputError(f"{path}: {error.strerror or error}") from None

    def _load(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {path} to resume the queued requests: {error}") from None
        model = saved.get("model") if isinstance(saved, dict) else None
        pending = saved.get("pending") if isinstance(saved, dict) else None
        if not isinstance(pending, dict):
            raise UsageError(f"{path} is not a side file of wai batch --queue; move it away to start anew")
        if model != self._model:
            raise UsageError(
                f"{path} holds queued requests of {model}: resume with -m {model}, "
                "or move the file away to ask everything anew"
            )
        self.pending = {
            str(request_id): [index for index in indexes if isinstance(index, int)]
            for request_id, indexes in pending.items()
            if isinstance(indexes, list)
        }

    def add(self, request_id: str, indexes: Sequence[int]) -> None:
        self.pending[request_id] = list(indexes)
        self._save()

    def forget(self, request_id: str, index: int | None = None) -> None:
        """Drop a record (to be asked anew), or the whole request id."""
        if index is None:
            self.pending.pop(request_id, None)
        else:
            kept = [n for n in self.pending.get(request_id, []) if n != index]
            if kept:
                self.pending[request_id] = kept
            else:
                self.pending.pop(request_id, None)
        self._save()

    def finished(self) -> None:
        """Every record answered: nothing is left to poll."""
        self.pending.clear()
        if self._path is not None:
            self._path.unlink(missing_ok=True)

    def _save(self) -> None:
        if self._path is None:
            return
        data = json.dumps({"model": self._model, "pending": self.pending}, indent=1)
        fresh = self._path.with_name(self._path.name + ".tmp")
        try:
            fresh.write_text(data + "\n", encoding="utf-8")
            os.replace(fresh, self._path)  # the old file or the new one, never half of one
        except OSError as error:
            raise OutputError(f"{self._path}: {error.strerror or error}") from None


def chunked(
    sized: Sequence[tuple[int, int]], *, records: int, payload: int
) -> Iterator[tuple[list[int], list[int]]]:
    """(record index, body bytes) in chunks of at most `records` records and `payload` bytes, in
    order; with each chunk, the records before its end too big to go even alone."""
    chunk: list[int] = []
    size = 0
    too_big: list[int] = []
    for index, body in sized:
        if body > payload:
            too_big.append(index)
            continue
        if chunk and (len(chunk) >= records or size + body > payload):
            yield chunk, too_big
            chunk, size, too_big = [], 0, []
        chunk.append(index)
        size += body
    if chunk or too_big:
        yield chunk, too_big


class QueueRunner:
    """Plays records through the batch queue; outcomes as each chunk's responses arrive."""

    def __init__(
        self,
        runner: BatchRunner,
        client: WorkersAIStream,
        ids: QueueIds,
        *,
        chunk: int = DEFAULT_CHUNK,
        first_poll: float = DEFAULT_POLL,
        max_payload: int = MAX_PAYLOAD,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._runner = runner
        self._client = client
        self._ids = ids
        self._chunk = max(1, chunk)
        self._first_poll = first_poll
        self._max_payload = max_payload
        self._sleep = sleep
        self.stopped_by: WaiError | None = None
        self._ids_left_over = False  # a request id whose polls kept failing: --resume polls it again
        # Told what the queue is doing (the progress bar on a terminal shows it).
        self.on_status: Callable[[str], None] = lambda status: None

    def run(self, prepared: Prepared) -> Iterator[Outcome]:
        yield from prepared.failed
        planned = {record.index: (record, turn) for record, turn in prepared.planned}
        if not planned:
            return
        polling: dict[str, list[int]] = {}
        for request_id, indexes in list(self._ids.pending.items()):
            mine = [index for index in indexes if index in planned]
            if mine:
                polling[request_id] = mine  # asked before the restart: polled, not asked again
        asked = {index for indexes in polling.values() for index in indexes}
        todo = [index for index in planned if index not in asked]
        for chunk, too_big in self._chunks(todo, planned):
            for index in too_big:
                yield Outcome(planned[index][0], None, too_big[index])
            if not chunk or self.stopped_by is not None:
                continue
            try:
                request_id = self._submit(chunk, planned)
            except WaiError as error:
                for index in chunk:
                    outcome = Outcome(planned[index][0], None, error, planned[index][1])
                    if outcome.stops_batch:
                        self.stopped_by = error
                    yield outcome
                continue
            self._ids.add(request_id, chunk)
            polling[request_id] = chunk
            self.on_status(f"queued {counted(len(polling), 'request')}")
        yield from self._polled(polling, planned)
        if self.stopped_by is None and not self._ids_left_over:
            self._ids.finished()

    def _chunks(
        self, todo: Sequence[int], planned: Mapping[int, tuple[Record, PlannedTurn]]
    ) -> Iterator[tuple[list[int], dict[int, WaiError]]]:
        """The records in chunks (see `chunked`), with the errors of those too big to go alone."""
        sized = [
            (index, len(json.dumps(self._client.body(planned[index][1].request)).encode())) for index in todo
        ]
        sizes = dict(sized)
        for chunk, too_big in chunked(sized, records=self._chunk, payload=self._max_payload):
            yield (
                chunk,
                {
                    index: BackendError(
                        f"the record's request is {sizes[index] / 1e6:.1f} MB: Workers AI's batch queue "
                        "takes under 10 MB a request; ask it without --queue"
                    )
                    for index in too_big
                },
            )

    def _submit(self, chunk: Sequence[int], planned: Mapping[int, tuple[Record, PlannedTurn]]) -> str:
        first = planned[chunk[0]][1].request
        bodies = [(str(index), self._client.body(planned[index][1].request)) for index in chunk]
        tries = 0
        while True:
            try:
                return self._client.queue_submit(first, bodies)
            except RetryableError as error:
                tries += 1
                if tries >= POLL_TRIES:
                    raise BackendError(f"{error.message} (gave up after {tries} attempts)") from None
                self._sleep(error.retry_after or self._first_poll * 1.5**tries)

    def _polled(
        self, polling: dict[str, list[int]], planned: Mapping[int, tuple[Record, PlannedTurn]]
    ) -> Iterator[Outcome]:
        wait = self._first_poll
        failed_polls: dict[str, int] = {}
        while polling:
            self.on_status(f"{counted(len(polling), 'queued request')} to poll, next in {wait:.0f} s")
            self._sleep(wait)
            wait = min(wait * 1.5, MOST_POLL_WAIT)
            for request_id, indexes in list(polling.items()):
                model = planned[indexes[0]][1].request
                try:
                    responses = self._client.queue_poll(model, request_id)
                except RetryableError as error:
                    failed_polls[request_id] = failed_polls.get(request_id, 0) + 1
                    if failed_polls[request_id] < POLL_TRIES:
                        continue
                    self._ids_left_over = True  # kept in the side file: the queue may still answer
                    del polling[request_id]
                    gave_up = BackendError(
                        f"{error.message} (polled {POLL_TRIES} times; --resume polls again)"
                    )
                    yield from (Outcome(planned[index][0], None, gave_up) for index in indexes)
                    continue
                except WaiError as error:
                    del polling[request_id]
                    self._ids.forget(request_id)  # refused for good: --resume asks its records anew
                    for index in indexes:
                        outcome = Outcome(planned[index][0], None, error, planned[index][1])
                        if outcome.stops_batch:
                            self.stopped_by = error
                        yield outcome
                    continue
                failed_polls.pop(request_id, None)
                if responses is None:
                    continue
                del polling[request_id]
                yield from self._answered(request_id, indexes, responses, planned)

    def _answered(
        self,
        request_id: str,
        indexes: Sequence[int],
        responses: Sequence[Mapping[str, Any]],
        planned: Mapping[int, tuple[Record, PlannedTurn]],
    ) -> Iterator[Outcome]:
        by_reference = {str(response.get("external_reference")): response for response in responses}
        for index in indexes:
            record, turn = planned[index]
            response = by_reference.get(str(index))
            if response is None:
                got: Any = BackendError("Workers AI's queue answered the batch without this record")
            else:
                got = self._client.queue_events(turn.request, response)
            if isinstance(got, WaiError):
                self._ids.forget(request_id, index)  # --resume asks it anew
                yield Outcome(record, None, got, turn)
                continue
            result = self._runner.planner.run(turn, QuietSink(), events=iter(got))
            if result.error is not None:
                self._ids.forget(request_id, index)
            yield Outcome(record, result, result.error, turn)

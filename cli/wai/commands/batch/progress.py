"""What `wai batch` tells on stderr: a live progress bar when stderr is a terminal (Rich), and
one summary line at the end, wherever stderr goes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from wai.wording import counted

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


@dataclass(slots=True)
class Tally:
    """The batch's figures so far."""

    total: int  # records this run asks (those done before, with --resume, not among them)
    done: int = 0
    failed: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    started: float = field(default_factory=time.monotonic)
    status: str = ""  # what the batch waits for, when it is not the records themselves (the queue)

    def add(self, ok: bool, tokens_in: int | None, tokens_out: int | None) -> None:
        self.done += 1
        self.failed += not ok
        self.tokens_in += tokens_in or 0
        self.tokens_out += tokens_out or 0

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        seconds = self.seconds
        return self.done / seconds if seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: how many, how many failed, how fast, how many tokens."""
        ok = self.done - self.failed
        return (
            f"batch: {self.done} of {counted(self.total, 'record')} done, {ok} ok, {self.failed} failed, "
            f"{self.seconds:.1f} s ({self.rate:.1f}/s), tokens in {self.tokens_in}, out {self.tokens_out}"
        )


class ProgressView:
    """A Rich progress bar on a terminal's stderr (done/total, errors, rate, tokens, ETA); nothing
    elsewhere. Use as a context manager.

    `shares_screen`: the lines go to the same terminal (stdout a terminal too); each write is then
    made under `writing()`, which takes the bar off the screen first, or the line would be glued to
    the bar's and left there when the bar redraws below it."""

    def __init__(self, tally: Tally, stderr: TextIO, *, live: bool, shares_screen: bool = False) -> None:
        self._tally = tally
        self._stderr = stderr
        self._live = live
        self._shares_screen = shares_screen
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressView:
        if self._live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            console = Console(file=self._stderr)
            self._progress = Progress(
                TextColumn("batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[errors]} errors"),
                TextColumn("{task.fields[rate]}/s"),
                TextColumn("tokens {task.fields[tokens]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "batch", total=self._tally.total, errors=0, rate="0.0", tokens="0/0", status=""
            )
        return self

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around a write to stdout: the bar off the screen meanwhile when both are the terminal."""
        progress = self._progress if self._shares_screen else None
        if progress is None:
            yield
            return
        progress.stop()  # transient: the bar is erased and the cursor back at its line's start
        try:
            yield
        finally:
            progress.start()

    def update(self) -> None:
        if self._progress is None or self._task is None:
            return
        tally = self._tally
        self._progress.update(
            self._task,
            completed=tally.done,
            errors=tally.failed,
            rate=f"{tally.rate:.1f}",
            tokens=f"{tally.tokens_in} in/{tally.tokens_out} out",
            status=tally.status,
        )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

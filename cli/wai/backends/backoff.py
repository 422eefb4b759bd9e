"""A back-off shared by every request of one command (the workers of `wai batch`).

When one request is told to slow down (a 429, with or without Retry-After), every request of the
command waits, not only the one that was told: the server's limit is the account's, and workers
that kept sending would only collect more refusals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SharedBackoff:
    """A pause every request waits out before it is sent; any request may lengthen it."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self._changed = threading.Condition()
        self.pauses = 0  # how many times a refusal paused the command: for its summary

    def pause(self, seconds: float) -> None:
        """No request goes out for `seconds` from now (a longer pause already running stays)."""
        with self._changed:
            self._until = max(self._until, self._clock() + seconds)
            self.pauses += 1
            self._changed.notify_all()

    def wait(self) -> None:
        """Return once no pause is running."""
        with self._changed:
            while (left := self._until - self._clock()) > 0:
                self._changed.wait(left)

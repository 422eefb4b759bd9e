"""Standard output that fails as one error, not as a traceback.

A full disk (`wai ask hi > /dev/full`), an I/O error or a closed descriptor makes a write or a
flush of stdout raise OSError wherever it happens. Wrapped here, every command sees the same
OutputError ("cannot write the output: no space left on device") through its usual error path.
A reader that goes away (BrokenPipeError) is not a failure and passes through unchanged.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO, cast

from wai.errors import OutputError


class GuardedOutput:
    """A text stream around sys.stdout whose failures raise OutputError.

    After the first failure the descriptor is pointed at /dev/null, so what Python still holds in
    its buffer drains there at exit instead of failing a second time; later writes raise again,
    later flushes have nothing left to say.
    """

    def __init__(self, inner: TextIO | None) -> None:
        self._inner = inner
        self._failed: OutputError | None = None if inner is not None else OutputError("stdout is closed")

    def write(self, text: str) -> int:
        if self._failed is not None:
            raise self._failed
        assert self._inner is not None
        try:
            return self._inner.write(text)
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            raise self._fail(exc) from None

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._failed is not None or self._inner is None:
            return
        try:
            self._inner.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError) as exc:
            raise self._fail(exc) from None

    def isatty(self) -> bool:
        return self._inner is not None and not self._inner.closed and self._inner.isatty()

    def __getattr__(self, name: str) -> Any:
        if self._inner is None:
            raise AttributeError(name)
        return getattr(self._inner, name)

    def _fail(self, exc: OSError | ValueError) -> OutputError:
        from wai.settings import os_reason

        reason = os_reason(exc) if isinstance(exc, OSError) else "stdout is closed"
        self._failed = OutputError(reason)
        if self._inner is not None:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._inner.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
        return self._failed


def guard_stdout() -> None:
    """Wrap sys.stdout, once; a terminal is left as it is (it does not fill up, and the live panel
    and the prompt talk to it directly)."""
    stream = sys.stdout
    if isinstance(stream, GuardedOutput):
        return
    try:
        if stream is not None and stream.isatty():
            return
    except ValueError:  # closed
        pass
    sys.stdout = cast(TextIO, GuardedOutput(stream))

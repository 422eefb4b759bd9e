"""The error hierarchy: every expected failure carries its exit code and a one-line message.

    WaiError                 exit 1: an expected failure, one line on stderr, no traceback
    ├── UsageError           exit 2: the command line itself is wrong
    │   └── ChatTemplateError    the model's chat template rejects the conversation
    ├── ConfigError          exit 2: a configuration file, variable or catalog entry
    ├── WindowError          exit 3: the input does not fit the model's windows
    ├── BackendError         exit 1: the backend, the network or the model failed
    │   ├── RetryableError   worth retrying, before any output has arrived
    │   ├── AllowanceSpent   the account's daily allowance is used up: nothing more runs today
    │   └── IncompleteReply  the stream broke after output began; what arrived is kept
    ├── OutputError          exit 1: standard output refused the text
    └── SchemaMismatch       exit 4: the reply does not satisfy the requested schema

Ctrl-C is not an error: it ends a command with exit 130 (EXIT_INTERRUPTED).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_WINDOW = 3
EXIT_SCHEMA = 4
EXIT_INTERRUPTED = 130


class WaiError(Exception):
    """An expected failure: shown as one line on stderr, never as a traceback.

    `code`: what kind of failure, for scripts (the `error` object of `--json` and `--jsonl`).
    """

    exit_code = EXIT_FAILURE
    code = "failure"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(WaiError):
    """The command line itself is wrong."""

    exit_code = EXIT_USAGE
    code = "usage"


class ConfigError(WaiError):
    """A configuration file, variable or catalog entry is wrong or missing."""

    exit_code = EXIT_USAGE
    code = "config"


class ChatTemplateError(UsageError):
    """The model's chat template rejects the conversation (a system prompt it does not take, ...)."""

    code = "chat_template"


class WindowError(WaiError):
    """The input does not fit the model's context window (or leaves no room to answer)."""

    exit_code = EXIT_WINDOW
    code = "window"


class BackendError(WaiError):
    """The backend, the network or the model failed."""

    exit_code = EXIT_FAILURE
    code = "backend"


class RetryableError(BackendError):
    """A failure worth retrying, before any output has arrived."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, max_retries: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.max_retries = max_retries  # fewer tries than the backend's own limit, when set


class AllowanceSpent(BackendError):
    """The account's daily allowance is used up (Workers AI 4006, 3036): every request after this one
    would be refused too, so a command of many requests stops at it."""


class IncompleteReply(BackendError):
    """The stream broke after output had begun: what arrived is kept, the rest is lost.

    `says_incomplete`: the message itself tells the user the reply is incomplete, so nothing
    needs adding.
    """

    code = "incomplete"

    def __init__(self, message: str, *, says_incomplete: bool = False) -> None:
        super().__init__(message)
        self.says_incomplete = says_incomplete


class OutputError(WaiError):
    """Standard output refused the text: a full disk, an I/O error, a closed descriptor."""

    exit_code = EXIT_FAILURE
    code = "output"

    def __init__(self, reason: str) -> None:
        super().__init__(f"cannot write the output: {reason}")


class SchemaMismatch(WaiError):
    """The reply does not satisfy the schema it was asked for (`--schema`): it is not JSON, was cut
    by the output window before its JSON closed, or breaks a rule of the schema.

    `raw`: the reply's text as it arrived, kept for the transcript and `--json`.
    """

    exit_code = EXIT_SCHEMA
    code = "schema"

    def __init__(self, message: str, *, raw: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.raw = raw

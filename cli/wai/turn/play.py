"""One planned turn, played and reported the same way by every command (turn/planner.py plays it).

Shows the backend's warnings, streams into the sink, and tells the user on stderr what went
wrong or was cut short. The caller keeps the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TextIO

from wai.backends.base import Backend
from wai.backends.request import Request
from wai.errors import IncompleteReply
from wai.notices import Notifier
from wai.render.base import Sink
from wai.render.choose import ColorMode, OutputMode, choose_sink
from wai.turn.stream import stream_turn, turn_info
from wai.turn_result import TurnResult
from wai.wording import counted


@dataclass(frozen=True, slots=True)
class TurnWords:
    """What a command calls its remedies, in what is said after a turn: `more` allows a longer
    reply, `effort` a shorter thinking; `interrupted` is said after a Ctrl-C once some of the
    reply was shown (before that, wai says the reply never began)."""

    more: str = "raise --max-tokens"
    effort: str = "lower --reasoning-effort"
    interrupted: str = "interrupted; the reply above is incomplete"


# How the command line names its remedies (`wai ask`, and any command of options).
COMMAND_LINE_WORDS = TurnWords()


def sink_for(
    notifier: Notifier,
    *,
    output: OutputMode,
    color: ColorMode,
    stats: bool | None,
    stdout: TextIO,
    show_thinking: bool = False,
    schema: bool = False,
) -> Sink:
    """The sink for this output; in plain mode `--stats` goes to stderr as one line; `schema`:
    the reply is shown only once validated (--schema)."""

    def stats_to_stderr(result: TurnResult) -> None:
        from wai.render.footer import format_stats

        notifier.info(format_stats(result))

    return choose_sink(
        output=output,
        color=color,
        stats=stats,
        show_thinking=show_thinking,
        stdout=stdout,
        stderr_stats=stats_to_stderr,
        schema=schema,
    )


def play_turn(
    backend: Backend,
    request: Request,
    sink: Sink,
    notifier: Notifier,
    *,
    prompt_exact: bool,
    words: TurnWords = COMMAND_LINE_WORDS,
    warned: Sequence[str] = (),
) -> TurnResult:
    """Stream the reply; report an interruption, a failure or the output cap on stderr.

    `warned`: what the caller warned of while planning the turn; with the backend's own warnings
    it goes into the turn's info, for --json and --jsonl.
    """
    backend_warnings = backend.warnings(request.model)
    for warning in backend_warnings:
        notifier.warn(warning)
    info = replace(
        turn_info(backend, request, prompt_exact=prompt_exact),
        more_hint=words.more,
        effort_hint=words.effort,
        warnings=(*warned, *backend_warnings),
    )
    result = stream_turn(backend, request, sink, info)
    _tell_notices(notifier, result)
    error = result.error
    if result.interrupted:
        # The caller's note speaks of a partial reply; with nothing shown there is none.
        notifier.warn(words.interrupted if result.text else "interrupted before the reply began")
    elif error is not None:
        notifier.error(str(error))
        # The backend's own line usually says the reply is incomplete already.
        if isinstance(error, IncompleteReply) and result.text and not error.says_incomplete:
            notifier.warn("the reply above is incomplete: the stream broke before it ended")
    elif result.finish_reason == "length":
        _tell_length_stop(notifier, sink, request, result)
    elif result.thinking_only:
        notifier.warn("the model ended its reply after thinking, without an answer")
    return result


def _tell_length_stop(notifier: Notifier, sink: Sink, request: Request, result: TurnResult) -> None:
    from wai.render.footer import cap_advice, thinking_cap_hint

    produced = result.completion_tokens
    own_limit = produced is not None and result.usage_exact and produced < request.max_tokens
    if result.thinking_only and not own_limit:
        # Said on stderr even under a footer that says it: a pipe or a script sees no footer, and
        # an empty answer must never pass for a short one.
        notifier.warn(
            f"the thinking used the whole output window ({counted(request.max_tokens, 'token')}) before the "
            f"answer began; {thinking_cap_hint(result.info)}"
        )
    elif own_limit and produced is not None:
        # The server's own limit, not ours: raising max_tokens would not help, so say so even
        # where the sink reports the cap itself.
        notifier.warn(
            f"the model stopped at {counted(produced, 'token')} on its own length limit "
            "(finish_reason length), "
            f"below max_tokens {request.max_tokens}; ask it to continue for more"
        )
    elif not sink.tells_output_cap:
        notifier.warn(
            f"the reply stopped at the output cap ({counted(request.max_tokens, 'token')}); "
            f"{cap_advice(result.info)}"
        )


def _tell_notices(notifier: Notifier, result: TurnResult) -> None:
    # After the turn, so a warning never lands in the middle of the reply on a shared terminal.
    for notice in result.notices:
        notifier.warn(notice)

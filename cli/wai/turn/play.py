"""One planned turn, played and reported the same way by `wai ask` and `wai chat`.

Builds the Request from the window plan, shows the backend's warnings, streams into the sink,
and tells the user on stderr what went wrong or was cut short. The caller keeps the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TextIO

from wai.backends.base import Backend, BackendName
from wai.backends.registry import registration
from wai.backends.request import Request
from wai.catalog.entries import ModelSpec
from wai.conversation import ReasoningEffort, Timeouts
from wai.errors import IncompleteReply
from wai.notices import Notifier
from wai.render.base import Sink
from wai.render.choose import ColorMode, OutputMode, choose_sink
from wai.sampling import Sampling
from wai.turn.run import run_turn, turn_info
from wai.turn_result import TurnResult
from wai.windows.budget import Plan
from wai.wording import counted


def request_for(
    spec: ModelSpec,
    plan: Plan,
    *,
    sampling: Sampling,
    timeouts: Timeouts,
    stream: bool = True,
    reasoning_effort: ReasoningEffort | None = None,
    raw: bool = False,
) -> Request:
    if plan.windows is not None:  # the server told smaller windows than the model's
        from dataclasses import replace

        held = plan.windows
        spec = replace(
            spec,
            context_window=held.context_window,
            max_output=held.max_output,
            total_context=held.total_context,
        )
    return Request(
        model=spec,
        messages=plan.messages,
        max_tokens=plan.max_tokens,
        sampling=sampling,
        stream=stream,
        timeouts=timeouts,
        prompt_tokens=plan.prompt_tokens,
        reasoning_effort=reasoning_effort,
        raw=raw,
    )


def effort_for(
    spec: ModelSpec, backend_name: BackendName, effort: ReasoningEffort | None
) -> tuple[ReasoningEffort | None, str | None]:
    """The reasoning effort to send to this model, and why the one asked for is not sent (or None).

    Only models the catalog marks `reasoning = true` take one, and only on a backend that sends it
    (Workers AI): other models would refuse the field or ignore it, and llama.cpp has no such setting.
    """
    if effort is None:
        return None, None
    if not registration(backend_name).reasoning_effort:
        return None, (
            f"the reasoning effort ({effort}) is not sent: the {backend_name} backend has no such setting"
        )
    if not spec.reasoning:
        return None, (
            f"the reasoning effort ({effort}) is not sent: {spec.id} is not a reasoning model in the "
            "catalog (set reasoning = true for it in models.toml if it is one)"
        )
    return effort, None


def sink_for(
    notifier: Notifier,
    *,
    output: OutputMode,
    color: ColorMode,
    stats: bool | None,
    stdout: TextIO,
    show_thinking: bool = False,
) -> Sink:
    """The sink for this output; in plain mode `--stats` goes to stderr as one line."""

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
    )


def play_turn(
    backend: Backend,
    request: Request,
    sink: Sink,
    notifier: Notifier,
    *,
    prompt_exact: bool,
    more_hint: str,
    interrupted_note: str,
    effort_hint: str = "lower --reasoning-effort",
    warned: Sequence[str] = (),
) -> TurnResult:
    """Stream the reply; report an interruption, a failure or the output cap on stderr.

    `interrupted_note` is said after a Ctrl-C once some of the reply was shown; before that, wai
    says the reply never began. `warned`: what the caller warned of while planning the turn; with
    the backend's own warnings it goes into the turn's info, for --json and --jsonl.
    """
    backend_warnings = backend.warnings(request)
    for warning in backend_warnings:
        notifier.warn(warning)
    info = replace(
        turn_info(backend, request, prompt_exact=prompt_exact),
        more_hint=more_hint,
        effort_hint=effort_hint,
        warnings=(*warned, *backend_warnings),
    )
    result = run_turn(backend, request, sink, info)
    _tell_notices(notifier, result)
    error = result.error
    if result.interrupted:
        # The caller's note speaks of a partial reply; with nothing shown there is none.
        notifier.warn(interrupted_note if result.text else "interrupted before the reply began")
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

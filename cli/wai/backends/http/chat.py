"""What every chat backend over HTTP shares: one request per turn, streamed as server-sent events.

A reply is retried with back-off (honouring Retry-After) only while nothing has been shown: a
reply that broke after its first token (or its first piece of thinking) raises IncompleteReply,
so a partial answer never looks whole. A stream that carries nothing at all (no text, no
thinking, no tool call) is asked once more without streaming, and is an error if still empty.
Each event is read by `chunks`, in either shape servers send. Subclasses say where a request
goes, what it carries and what a refusal means (`_url`, `body`, `_headers`, `_refused`,
`_bad_address`); every message names the service (`who`), and every message, exception and
debug line passes through the subclass's Scrubber.
"""

from __future__ import annotations

import email.utils
import json
import random
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from wai import __version__
from wai.backends.http.chunks import Stop, ToolCall, chunk_events
from wai.backends.http.errors import (
    ApiError,
    Scrubber,
    body_text,
    display_url,
    one_line,
    parse_error,
    without_lone_surrogates,
)
from wai.backends.http.sse import SSEReader
from wai.backends.request import Request
from wai.errors import BackendError, ConfigError, IncompleteReply, RetryableError, WaiError
from wai.events import Event, Finish, FinishReason, Notice, Reasoning, Token, Usage
from wai.wording import counted

if TYPE_CHECKING:
    import httpx

    from wai.backends.backoff import SharedBackoff

DONE = "[DONE]"
EMPTY_REPLY = "the model returned an empty reply"
# The read timeout of the one request sent again without streaming after an empty stream: the
# server says nothing until the whole reply is written (what --no-stream allows by default).
WHOLE_REPLY_READ_TIMEOUT = 300.0
TOOL_CALL_NOTICE = "the model answered with a tool call, which wai does not run or show"
# Finish reasons that end a reply as it was meant to end (the model's own stop, the cap, a tool
# call, and the other names servers give a stop: TGI's, Anthropic-style). Any other ends it early
# for a reason of the server's own (a content filter, an abort), which the reply's text cannot show.
_WHOLE_ENDINGS = frozenset(
    {"stop", "length", "tool_calls", "function_call", "eos", "eos_token", "stop_sequence", "end_turn"}
)
_WHY_CUT = {"content_filter": "its content filter stopped it"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH_SURROGATES = ("\ud800", "\udbff")


DEFAULT_MAX_RETRIES = 3  # tries after the first, for a 429 or a 5xx before any output


class _Surrogates:
    """Joins a character the server sent as two JSON escapes (`\\ud83c`, `\\udf89`) in two events.

    Some servers escape characters outside the BMP as a UTF-16 pair and may split the pair across
    events; a lone half cannot be encoded for any output and would crash every sink. A trailing
    high half is held back until the next piece; whatever stays unpaired becomes U+FFFD.
    """

    def __init__(self) -> None:
        self._held = ""

    def push(self, text: str) -> str:
        if not self._held and not _SURROGATE.search(text):
            return text  # the usual case, kept cheap
        text, self._held = self._held + text, ""
        if text and _HIGH_SURROGATES[0] <= text[-1] <= _HIGH_SURROGATES[1]:
            text, self._held = text[:-1], text[-1]
        return without_lone_surrogates(text)

    def flush(self) -> str:
        """The end of the reply: a half still held has no partner coming."""
        held, self._held = self._held, ""
        return "\ufffd" if held else ""


@dataclass(slots=True)
class _Progress:
    """What one attempt has shown so far; decides between retrying and IncompleteReply."""

    tokens: int = 0  # events that carried text
    chars: int = 0
    thoughts: int = 0  # events that carried thinking
    thought_chars: int = 0
    tool_call: bool = False
    usage: Usage | None = None  # the last one seen: each chunk may carry the total so far
    finish: str | None = None  # the server's own finish_reason
    done: bool = False
    unreadable: int = 0  # events that were not JSON: whatever they held is not in the reply
    surrogates: _Surrogates = field(default_factory=_Surrogates)
    thinking_surrogates: _Surrogates = field(default_factory=_Surrogates)
    notices: set[str] = field(default_factory=set)  # shared by the attempts of one reply

    @property
    def began(self) -> bool:
        """Something was shown: trying again would show it twice."""
        return self.tokens > 0 or self.thoughts > 0

    @property
    def empty(self) -> bool:
        return not self.began and not self.tool_call


class ChatOptions(TypedDict, total=False):
    """What every chat backend over HTTP may be built with (each subclass passes them on).

    `sleep`, `base_delay`, `max_delay`, `max_total_wait` and `rng` shape the retry back-off
    (exponential with jitter, never shorter than a Retry-After); tests make them fast.
    """

    max_retries: int  # default 3
    debug_log: Callable[[str], None] | None
    base_delay: float  # default 0.5 s
    max_delay: float  # default 8 s
    max_total_wait: float  # default 30 s
    sleep: Callable[[float], None]  # default time.sleep
    rng: random.Random | None
    backoff: SharedBackoff | None  # a back-off shared with the command's other requests


class StreamingChatBackend:
    """A chat backend over HTTP; subclasses name the service and shape its requests."""

    who = "the server"  # the service, as messages name it
    debug_prefix = "http"

    def __init__(self, *, scrub: Scrubber, base_shown: str, **options: Unpack[ChatOptions]) -> None:
        self._scrub = scrub
        self._base_shown = base_shown  # never a user:password@ part
        self._max_retries = max(0, options.get("max_retries", DEFAULT_MAX_RETRIES))
        self._debug_log = options.get("debug_log")
        self._base_delay = options.get("base_delay", 0.5)
        self._max_delay = options.get("max_delay", 8.0)
        self._max_total_wait = options.get("max_total_wait", 30.0)
        self._sleep = options.get("sleep", time.sleep)
        self._rng = options.get("rng") or random.Random()
        self._backoff = options.get("backoff")
        self._client: httpx.Client | None = None
        # wai batch streams from several threads at once: without the lock, two first requests
        # could each make a client, and the one not kept would leak its connections.
        self._client_lock = threading.Lock()

    # -- what a subclass says -------------------------------------------------------------------

    def _url(self, request: Request) -> str:
        raise NotImplementedError

    def body(self, request: Request) -> dict[str, object]:
        raise NotImplementedError

    def _headers(self, request: Request) -> dict[str, str]:
        """Headers of a chat request (authorization among them)."""
        return {}

    def _bad_address(self, reason: str) -> ConfigError:
        """The base URL cannot be used at all (an unknown scheme, a malformed address)."""
        return ConfigError(f"the address of {self.who} is not usable ({reason}): now {self._base_shown}")

    def _refused(self, request: Request, error: ApiError, body: bytes = b"") -> WaiError:
        """The exception for a refused request: RetryableError for what is worth another try.
        `body`: the refusal's whole body, where there was one (some servers put figures beside
        the message)."""
        raise NotImplementedError

    def _empty_stream_hint(self, request: Request) -> str | None:
        """What may be wrong when a stream ends with nothing in it (None: nothing to add)."""
        return None

    # -- the turn -------------------------------------------------------------------------------

    def stream(self, request: Request) -> Iterator[Event]:
        told: set[str] = set()
        progress = yield from self._retried(request, told)
        if progress.empty and request.stream:
            self._debug("the stream carried no text, thinking or tool call; asking once more without it")
            whole = replace(
                request,
                stream=False,
                timeouts=replace(request.timeouts, read=max(request.timeouts.read, WHOLE_REPLY_READ_TIMEOUT)),
            )
            progress = yield from self._retried(whole, told)
        if progress.empty:
            raise BackendError(EMPTY_REPLY, hint=_empty_hint(request, progress))
        yield from self._ending(request, progress)

    def _retried(self, request: Request, told: set[str]) -> Generator[Event, None, _Progress]:
        """One reply, its attempts retried with back-off while nothing has been shown.

        Returns (as the generator's value) the successful attempt's progress; the caller ends the
        reply with its usage and finish reason.
        """
        attempt = 0
        waited = 0.0
        while True:
            progress = _Progress(notices=told)
            if self._backoff is not None:
                self._backoff.wait()  # another request of the command was told to slow down
            try:
                yield from self._attempt(request, progress, attempt)
                return progress
            except RetryableError as exc:
                if progress.began:  # _attempt never lets this happen; guard the promise anyway
                    raise IncompleteReply(exc.message) from None
                delay = self._delay(attempt, exc.retry_after)
                tries = f"{attempt + 1} attempt{'s' if attempt else ''}"
                limit = (
                    self._max_retries if exc.max_retries is None else min(self._max_retries, exc.max_retries)
                )
                if attempt >= limit:
                    raise BackendError(f"{exc.message} (gave up after {tries})", hint=exc.hint) from None
                if waited + delay > self._max_total_wait:
                    asked = f"the server asked to wait {exc.retry_after:g} s" if exc.retry_after else ""
                    raise BackendError(
                        f"{exc.message} (gave up after {tries}{'; ' + asked if asked else ''})"
                    ) from None
                self._debug(f"retry {attempt + 1}/{self._max_retries} in {delay:.2f} s: {exc.message}")
                if self._backoff is not None:
                    self._backoff.pause(delay)  # every request waits, and this one at the loop's top
                else:
                    self._sleep(delay)
                waited += delay
                attempt += 1

    def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    headers={"User-Agent": f"wai/{__version__}"}, follow_redirects=False
                )
            return self._client

    def _http_for(self, request: Request) -> httpx.Client:
        """The client that sends `request` (one per backend here; one per server elsewhere)."""
        return self._http()

    def _attempt(self, request: Request, progress: _Progress, attempt: int) -> Iterator[Event]:
        import httpx

        client = self._http_for(request)
        url = self._url(request)
        body = self.body(request)
        timeouts = request.timeouts
        timeout = httpx.Timeout(
            connect=timeouts.connect, read=timeouts.read, write=timeouts.read, pool=timeouts.connect
        )
        headers = self._headers(request)
        if request.stream:
            headers["Accept"] = "text/event-stream"
        self._debug(f"POST {display_url(url)} (attempt {attempt + 1}) {json.dumps(body, ensure_ascii=False)}")
        try:
            http_request = client.build_request("POST", url, json=body, headers=headers, timeout=timeout)
            response = client.send(http_request, stream=True)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise self._bad_address(self._scrub(str(exc))) from None
        except httpx.ConnectTimeout:
            raise RetryableError(
                f"could not connect to {self.who} within {timeouts.connect:g} s; "
                "check the network, or raise --connect-timeout"
            ) from None
        except httpx.TimeoutException:
            raise RetryableError(
                f"{self.who} did not answer within {timeouts.read:g} s; raise --read-timeout if it is busy"
            ) from None
        except httpx.ConnectError as exc:
            raise RetryableError(self._unreachable(exc)) from None
        except httpx.TransportError as exc:
            raise RetryableError(
                f"the connection to {self.who} broke before a reply ({self._reason(exc)})"
            ) from None
        try:
            ray = response.headers.get("cf-ray")  # Cloudflare's request id, for its support
            self._debug(
                f"HTTP {response.status_code} {response.headers.get('content-type', '')}"
                + (f" cf-ray={ray}" if ray else "")
            )
            if response.status_code >= 300:
                raise self._refusal(request, response)
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" in content_type:
                yield from self._events(request, response, progress)
            else:
                # Some servers answer a stream request with one JSON body; accept that as well.
                yield from self._whole(request, response, progress)
        finally:
            response.close()

    def _refusal(self, request: Request, response: httpx.Response) -> WaiError:
        import httpx

        try:
            raw = response.read()
        except httpx.HTTPError:
            raw = b""
        error = parse_error(
            response.status_code,
            raw,
            self._scrub,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )
        return self._refused(request, error, raw)

    # -- the reply ------------------------------------------------------------------------------

    def _events(self, request: Request, response: httpx.Response, progress: _Progress) -> Iterator[Event]:
        import httpx

        reader = SSEReader()
        gap = request.timeouts.read
        last_event = time.monotonic()
        chunks = response.iter_bytes()
        try:
            while not progress.done:
                try:
                    chunk = next(chunks, None)
                except httpx.ReadTimeout:
                    if progress.finish is not None:
                        break  # the reply had ended; only the [DONE] marker never came
                    raise self._broken(progress, f"the stream stalled for {gap:g} s", retry=False) from None
                except httpx.TransportError as exc:
                    if progress.finish is not None:
                        break
                    raise self._broken(progress, f"the connection broke ({self._reason(exc)})") from None
                except httpx.HTTPError as exc:  # a body that fails to decode (bad gzip, say)
                    why = f"the reply could not be decoded ({self._reason(exc)})"
                    raise self._broken(progress, why, retry=False) from None
                datas = reader.close() if chunk is None else reader.feed(chunk)
                if datas:
                    last_event = time.monotonic()
                for data in datas:
                    yield from self._event(data, request, progress)
                    if progress.done:
                        break
                if chunk is None:
                    break
                # Keep-alive comments keep the socket busy without any reply coming; that is a stall too.
                if not progress.done and time.monotonic() - last_event > gap:
                    if progress.finish is not None:
                        break
                    raise self._broken(
                        progress, f"the stream stalled for {gap:g} s (keep-alives only)", retry=False
                    )
        finally:
            # Closing now rather than when garbage collection gets round to it frees the connection.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if not progress.done:
            if progress.finish is None and progress.empty:
                # Nothing at all, not even a finish: a server that refused without saying why
                # (llama_cpp.server does so for a prompt over its context). Once more, not four times.
                error = RetryableError(
                    f"{self.who} sent no reply: the stream ended empty, before the server said it was done",
                    max_retries=1,
                )
                error.hint = self._empty_stream_hint(request)
                raise error
            if progress.finish is None:
                raise self._broken(progress, "the stream ended before the server said it was done")
            # A finish_reason is the server saying the reply is whole; [DONE] only closes the stream.
            self._debug(f"the stream ended without [DONE] after finish_reason {progress.finish}")

    def _event(self, data: str, request: Request, progress: _Progress) -> Iterator[Event]:
        if data.strip() == DONE:
            progress.done = True
            return
        try:
            payload = json.loads(data)
        except ValueError:
            self._debug(f"ignored a non-JSON event: {one_line(self._scrub(data))}")
            if data.strip():  # an empty one (a keep-alive) held nothing
                progress.unreadable += 1
            return
        if not isinstance(payload, dict):
            return
        failure = _stream_error(payload)
        if failure is not None:
            error = ApiError(
                status=200, code=failure[0], message=one_line(self._scrub(failure[1])), in_reply=True
            )
            exc = self._refused(request, error)
            raise self._broken(progress, exc.message, cause=exc) from None
        yield from self._read(payload, progress, whole=False)

    def _read(self, payload: dict[str, Any], progress: _Progress, *, whole: bool) -> Iterator[Event]:
        """One chunk (or a whole reply) into events; what it says of the reply goes into `progress`."""
        for piece in chunk_events(payload):
            # A whole reply has no next event to bring a split character's other half.
            if isinstance(piece, Reasoning):
                held = progress.thinking_surrogates
                yield from _thought(
                    progress, without_lone_surrogates(piece.text) if whole else held.push(piece.text)
                )
            elif isinstance(piece, Token):
                held = progress.surrogates
                yield from _shown(
                    progress, without_lone_surrogates(piece.text) if whole else held.push(piece.text)
                )
            elif isinstance(piece, ToolCall):
                progress.tool_call = True
                self._debug("ignored tool_calls: wai shows text replies only")
                yield from _notice(progress, TOOL_CALL_NOTICE)
            elif isinstance(piece, Usage):
                progress.usage = piece  # the last one wins: each is the total so far
            elif isinstance(piece, Stop):
                progress.finish = piece.reason

    def _whole(self, request: Request, response: httpx.Response, progress: _Progress) -> Iterator[Event]:
        import httpx

        try:
            raw = response.read()
        except httpx.ReadTimeout:
            raise BackendError(
                f"{self.who} sent no reply within {request.timeouts.read:g} s; raise --read-timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise BackendError(f"the connection to {self.who} broke ({self._reason(exc)})") from None
        try:
            payload = json.loads(raw.decode("utf-8", errors="replace"))
        except ValueError:
            payload = None
        result = payload.get("result") if isinstance(payload, dict) else None
        if not isinstance(result, dict):
            result = payload if isinstance(payload, dict) and "choices" in payload else None
        if result is None and isinstance(payload, dict):
            failure = _stream_error(payload)
            if failure is not None:
                error = ApiError(
                    status=response.status_code,
                    code=failure[0],
                    message=one_line(self._scrub(failure[1])),
                    in_reply=True,
                )
                raise self._refused(request, error)
        if result is None:
            preview = one_line(self._scrub(body_text(raw.decode("utf-8", errors="replace"))))
            raise BackendError(f"{self.who} sent a reply wai cannot read: {preview or '(empty)'}")
        progress.done = True
        yield from self._read(result, progress, whole=True)  # whole: no other half is coming

    def _ending(self, request: Request, progress: _Progress) -> Iterator[Event]:
        yield from _thought(progress, progress.thinking_surrogates.flush())
        yield from _shown(progress, progress.surrogates.flush())
        usage = progress.usage
        arrived = _implausible(usage, progress) if usage is not None else None
        if usage is not None and arrived is not None:
            self._debug(f"ignored usage {usage}: not a count of what arrived")
            yield from _notice(
                progress,
                f"{self.who} reported {counted(usage.completion_tokens, 'reply token')} for {arrived}; "
                "its usage is ignored and the reply's tokens estimated",
            )
            usage = None
        reason: FinishReason = "stop"
        # Without usage, each event of text is at least one token (thinking included).
        events = progress.tokens + progress.thoughts
        produced = usage.completion_tokens if usage is not None else events
        if produced > request.max_tokens:
            # Not the cap stopping it: the server went past it. Its own finish reason stands.
            sent = counted(produced, "reply token")
            sent = sent if usage is not None else f"at least {sent}"
            yield from _notice(
                progress,
                f"{self.who} sent {sent}, more than the max_tokens of {request.max_tokens} it was sent",
            )
            reason = "length" if progress.finish == "length" else "stop"
        elif progress.finish == "length" or (
            usage is not None and usage.completion_tokens >= request.max_tokens
        ):
            reason = "length"
        elif usage is None and events == request.max_tokens:
            reason = "length"  # one event per token, thinking included: that many filled the cap
        if progress.unreadable:
            yield from _notice(
                progress,
                f"{self.who} sent {counted(progress.unreadable, 'event')} wai could not read (not JSON): "
                "the reply may be missing what it held; --debug shows it",
            )
        if progress.finish is not None and progress.finish not in _WHOLE_ENDINGS:
            why = _WHY_CUT.get(progress.finish, "not the model's own stop")
            yield from _notice(
                progress,
                f"{self.who} ended the reply with finish_reason {progress.finish!r} ({why}): "
                "the reply may not be whole",
            )
        if usage is not None:
            yield usage
        yield Finish(reason)

    # -- failures -------------------------------------------------------------------------------

    def _broken(
        self, progress: _Progress, why: str, *, cause: WaiError | None = None, retry: bool = True
    ) -> WaiError:
        """The stream failed: IncompleteReply once text was shown; before that, worth a retry or not."""
        if progress.began:
            shown = (
                counted(progress.chars, "character")
                if progress.tokens
                else f"{counted(progress.thought_chars, 'character')} of thinking"
            )
            # The count before the cause: the cause may end with its own advice ("; try again later").
            return IncompleteReply(
                f"the reply is incomplete after {shown}: {why} (what arrived is kept)", says_incomplete=True
            )
        if cause is not None:
            return cause
        # A stall is not retried: each try would cost the user another full read timeout.
        return (RetryableError if retry else BackendError)(f"{self.who} sent no reply: {why}")

    def _unreachable(self, exc: httpx.TransportError) -> str:
        return f"cannot reach {self.who} at {self._base_shown} ({self._reason(exc)})"

    def _reason(self, exc: Exception) -> str:
        return one_line(self._scrub(str(exc))) or type(exc).__name__

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self._max_delay, self._base_delay * 2.0**attempt)
        # "Equal jitter": never less than half the back-off, so retries from many clients spread out.
        delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        return max(delay, retry_after) if retry_after is not None else delay

    def _debug(self, line: str) -> None:
        if self._debug_log is not None:
            self._debug_log(f"{self.debug_prefix}: {self._scrub(line)}")


def _shown(progress: _Progress, text: str) -> Iterator[Event]:
    if text:
        progress.tokens += 1
        progress.chars += len(text)
        yield Token(text)


def _thought(progress: _Progress, text: str) -> Iterator[Event]:
    if text:
        progress.thoughts += 1
        progress.thought_chars += len(text)
        yield Reasoning(text)


# Slack for tokens that carry no text of their own (an end marker, a stripped special token).
_USAGE_SLACK = 16


def _implausible(usage: Usage, progress: _Progress) -> str | None:
    """What the reported reply tokens were reported for, when they cannot be what arrived; None
    when they can. No token is shorter than one UTF-8 byte, hence at most 4 per character; and
    each piece of text a server streams is at least one token, so fewer tokens than pieces is a
    count too low (a server that went past max_tokens would hide it so). A tool call's tokens
    show no text, nor does thinking a server keeps to itself (its `reasoning_tokens`): those are
    not held against it."""
    if progress.tool_call:
        return None
    events = progress.tokens + progress.thoughts
    if usage.completion_tokens < events:
        return f"{counted(events, 'piece of text', 'pieces of text')} (each at least one token)"
    ceiling = 4 * (progress.chars + progress.thought_chars) + events + _USAGE_SLACK
    hidden = usage.reasoning_tokens or 0
    if not 0 <= usage.completion_tokens - hidden <= ceiling:
        return counted(progress.chars + progress.thought_chars, "character")
    return None


def _empty_hint(request: Request, progress: _Progress) -> str:
    usage = progress.usage
    if progress.finish == "length" or (usage is not None and usage.completion_tokens >= request.max_tokens):
        return (
            f"it stopped at the output cap of {counted(request.max_tokens, 'token')} before writing any; "
            "raise --max-tokens"
        )
    if request.stream:
        return "also when asked again without streaming; try again, or another model"
    return "try again, or another model"


def _notice(progress: _Progress, text: str) -> Iterator[Event]:
    if text not in progress.notices:  # once per reply, however many events repeat it
        progress.notices.add(text)
        yield Notice(text)


def _stream_error(payload: dict[str, Any]) -> tuple[int | None, str] | None:
    """An error reported inside a stream that had begun well (`errors` or `error` in an event)."""
    errors = payload.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0] if isinstance(errors[0], dict) else {}
        code = first.get("code")
        return (code if isinstance(code, int) else None), str(first.get("message") or errors[0])
    error = payload.get("error")
    if isinstance(error, dict):
        return None, str(error.get("message") or error)
    if isinstance(error, str) and error:
        return None, error
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds, from either of its forms (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if seconds == seconds else None  # NaN check


def sampling_fields(request: Request) -> dict[str, object]:
    """The sampling options given, under the names Workers AI and OpenAI-compatible servers share."""
    fields: dict[str, object] = dict(request.sampling.given())
    if request.reasoning_effort is not None:
        fields["reasoning_effort"] = request.reasoning_effort
    return fields

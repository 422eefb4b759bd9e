"""Workers AI's error replies turned into one line a person can act on, and the right exception.

Each message names the HTTP status and the API's error code, says what most likely went wrong
and what to do. Text echoed from the server passes through `Scrubber` first: the API token must
never reach a message, even if a proxy or the API itself were to repeat it.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from urllib.parse import unquote

from wai.errors import (
    AllowanceSpent,
    BackendError,
    ConfigError,
    RetryableError,
    SchemaMismatch,
    WaiError,
    WindowError,
)
from wai.terminal.safe_text import terminal_safe  # the one cleaning of text for a terminal

RETRYABLE_429 = frozenset({3040, 3021})  # out of capacity; the per-minute rate limit
INTERNAL_ERRORS = frozenset({3001, 3043})  # "unknown internal error", "internal server error": HTTP 500
# The daily free allocation: 3036 as documented, 4006 as observed since. Never retried.
DAILY_ALLOCATION = frozenset({3036, 4006})
WINDOW_EXCEEDED = 5021
# JSON mode's own failure: the model could not be held to the schema ("JSON Mode couldn't be met").
JSON_MODE_UNMET = "json mode couldn't be met"
RETIRED = 5028  # HTTP 410: "Model has been deprecated"
PAID_PLAN = 5035  # HTTP 403: the model needs the Workers Paid plan
NOT_ALLOWED = frozenset({5018, 3041})  # HTTP 403: the account may not use this model / Workers AI
BLOCKED = 3023  # HTTP 403: the account is blocked
TIMEOUT = 3007  # HTTP 408: worth one more try, no more
TIMEOUT_RETRIES = 1
# vLLM's own words for a request over the window, which newer models send without code 5021.
_VLLM_WINDOW = re.compile(r"maximum context length is (\d+) tokens|max_completion_tokens is too large", re.I)
_VLLM_LIMIT = re.compile(r"maximum context length is (\d+) tokens", re.I)
# vLLM's other numbers: the max_tokens it refused, and the prompt's size.
_VLLM_TOO_LARGE = re.compile(r"is too large: (\d+)", re.I)
_VLLM_INPUT = re.compile(r"(\d+) input tokens|\((\d+) in the messages", re.I)
_RETIRED_DAY = re.compile(r"deprecated on (\d{4}-\d{2}-\d{2})")
_MAX_ECHO = 200  # characters of a server's own message kept in ours
_MAX_PAGE_ECHO = 120  # of an HTML error page's text: the gist, not the page
_TAG = re.compile(r"<[!/?]?[A-Za-z][^>]*>")
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_UNSEEN = re.compile(r"<(script|style|head)\b[^>]*>.*?(?:</\1\s*>|$)", re.I | re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title", re.I | re.S)


class Scrubber:
    """Removes secrets (the API token, a password in the base URL) from any text before it is
    shown, raised or logged."""

    def __init__(self, *secrets: str) -> None:
        # A very short "secret" would blank out ordinary words; a real token is 40 characters.
        # Longest first, so a secret that contains another is removed whole. Each also in the
        # forms a server may echo it in: percent-encoded (a URL, a form) and JSON-escaped.
        forms = {form for s in secrets if len(s) >= 4 for form in _echoed_forms(s)}
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def _echoed_forms(secret: str) -> set[str]:
    import json
    from urllib.parse import quote, quote_plus

    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1]}


def _authority_end(rest: str) -> int:
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    return min(ends) if ends else len(rest)


def display_url(url: str) -> str:
    """The URL without its `user:password@` part: what messages, debug lines and describe() show."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = _authority_end(rest)
    authority = rest[:end]
    if "@" not in authority:
        return url
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{rest[end:]}"


def url_secrets(url: str) -> tuple[str, ...]:
    """The password of a `user:password@` base URL, as written and percent-decoded, for a Scrubber."""
    _, sep, rest = url.partition("://")
    authority = (rest if sep else url)[: _authority_end(rest if sep else url)]
    if "@" not in authority:
        return ()
    userinfo = authority.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    return (password, unquote(password)) if password else ()


@dataclass(frozen=True, slots=True)
class ApiError:
    """What the server said: status, the first error's code (None when the body had none) and text."""

    status: int
    code: int | None
    message: str
    retry_after: float | None = None
    # An error the server wrote inside a reply it had accepted (an event of a stream, a 200 body):
    # its HTTP status says nothing of it.
    in_reply: bool = False

    def where(self) -> str:
        said = f": {self.message}" if self.message else ""
        code = f", code {self.code}" if self.code is not None else ""
        if self.in_reply:  # the status was the 200 of a reply that began well
            return f"code {self.code}{said}" if self.code is not None else self.message or "no message"
        return f"HTTP {self.status}{code}{said}"

    @property
    def refusal(self) -> str:
        """What the server did, for a failure of no known kind: refused, or failed in its reply."""
        return "ended the reply with an error" if self.in_reply else "refused the request"


def parse_error(status: int, body: bytes, scrub: Scrubber, retry_after: float | None = None) -> ApiError:
    """Reads the envelope `{"errors": [{"code": N, "message": "..."}]}`; any other body becomes text."""
    text = body.decode("utf-8", errors="replace")
    code: int | None = None
    message = ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        code, message = _first_error(data)
    else:
        message = body_text(text)
    return ApiError(status=status, code=code, message=one_line(scrub(message)), retry_after=retry_after)


def body_text(text: str) -> str:
    """A body that is not JSON, as text to quote: an HTML page's words without its markup."""
    return page_text(text) if _TAG.search(text) else text.strip()


def page_text(page: str) -> str:
    """What an HTML error page (a proxy's or Cloudflare's own 5xx page) says, as short plain text."""
    text = _TAG.sub(" ", _UNSEEN.sub(" ", _COMMENT.sub(" ", page)))
    said = " ".join(html.unescape(text).split())
    if not said:
        title = _TITLE.search(page)
        said = " ".join(html.unescape(_TAG.sub(" ", title.group(1))).split()) if title else ""
    return said if len(said) <= _MAX_PAGE_ECHO else said[: _MAX_PAGE_ECHO - 1] + "…"


def _first_error(data: dict[str, object]) -> tuple[int | None, str]:
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        raw_code = first.get("code")
        code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
        if isinstance(raw_code, str) and raw_code.isdigit():
            code = int(raw_code)
        return code, str(first.get("message") or "")
    # OpenAI-style and ad-hoc shapes: {"error": "..."} or {"error": {"message": "..."}}
    error = data.get("error")
    if isinstance(error, dict):
        return None, str(error.get("message") or "")
    if isinstance(error, str):
        return None, error
    # vLLM's own shape, passed through by some proxies: {"object": "error", "message": "..."}
    message = data.get("message")
    return None, message if isinstance(message, str) else ""


def without_lone_surrogates(text: str) -> str:
    """Pairs of UTF-16 halves joined, unpaired halves U+FFFD: text every output can encode."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", errors="replace")


def one_line(text: str) -> str:
    """Server text made fit for one line of a message: no control characters, no line breaks."""
    # Carriage returns, tabs and form feeds separate words here: spaces, before the cleaning.
    text = terminal_safe(re.sub(r"[\t\n\v\f\r]", " ", without_lone_surrogates(text)))
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 1] + "…"


def mask(account_id: str) -> str:
    """Enough of an account id to recognise it, not enough to copy it."""
    if len(account_id) <= 8:
        return account_id[:2] + "…" if len(account_id) > 2 else "…"
    return f"{account_id[:4]}…{account_id[-4:]}"


def is_retryable(error: ApiError) -> bool:
    if error.code == TIMEOUT:
        return True
    if error.status == 429:
        return error.code not in DAILY_ALLOCATION
    if error.status >= 500:
        return True
    if error.status < 300 and error.code is not None:
        # An error event inside a 200 stream has no status of its own: its code says what the
        # status would have been.
        code = error.code
        return code in RETRYABLE_429 or code in INTERNAL_ERRORS or 500 <= code < 600
    return False


def is_retirement(error: ApiError) -> bool:
    """The model is retired: code 5028, or a 410 that says so in words."""
    return error.code == RETIRED or (error.status == 410 and "deprecated" in error.message.lower())


def retirement_day(error: ApiError) -> str | None:
    """The day a retirement message names ("... deprecated on 2026-05-30"), if any."""
    found = _RETIRED_DAY.search(error.message)
    return found.group(1) if found else None


def window_complaint(error: ApiError) -> tuple[bool, int | None]:
    """Whether a 400 is vLLM's context-length complaint, and the window it names (None if none)."""
    if (
        error.code == WINDOW_EXCEEDED
        or error.status not in (400, 413)
        or not _VLLM_WINDOW.search(error.message)
    ):
        return False, None
    limit = _VLLM_LIMIT.search(error.message)
    return True, int(limit.group(1)) if limit else None


def error_for(
    error: ApiError, *, model: str, account_id: str, base_url: str, window: int | None = None
) -> WaiError:
    """The exception for a refused request. RetryableError only for what is worth another try.

    `window`: the catalog's total_context for the model, to compare with a window the server names.
    """
    status, code, where = error.status, error.code, error.where()
    if is_retryable(error):
        retries = TIMEOUT_RETRIES if code == TIMEOUT else None
        return RetryableError(_retryable_message(error), retry_after=error.retry_after, max_retries=retries)
    if JSON_MODE_UNMET in error.message.lower():
        return SchemaMismatch(
            f"Workers AI could not hold {model}'s reply to the schema ({where})",
            raw="",
            hint="simplify the schema, bound its strings and arrays, or try another model",
        )
    if code == WINDOW_EXCEEDED:
        return WindowError(
            f"Workers AI says the input and max_tokens do not fit {model}'s context window ({where}); "
            "shorten the prompt or lower --max-tokens"
        )
    over, limit = window_complaint(error)
    if over:
        return _window_named(model, where, limit, window, _vllm_numbers(error.message))
    if code == PAID_PLAN:
        return ConfigError(
            f"{model} needs the Workers Paid plan ({where}); upgrade the account in the Cloudflare "
            "dashboard (Workers & Pages, Plans) or pick another model: `wai models`"
        )
    if code in NOT_ALLOWED:
        what = "Workers AI" if code == 3041 else model
        return ConfigError(
            f"this Cloudflare account is not allowed to use {what} ({where}); check the account "
            f"(now {mask(account_id)}) and the API token's permissions, or pick another model: `wai models`"
        )
    if code == BLOCKED:
        return ConfigError(
            f"Cloudflare has blocked this account's use of Workers AI ({where}); the dashboard says "
            "why; Cloudflare support can lift it"
        )
    if code == 5016:
        return BackendError(
            f"{model} needs its license terms agreed first ({where}); agree once by sending the prompt "
            f"'agree' to it: wai ask -m {model} agree"
        )
    # 9109 is Cloudflare's API-wide "invalid access token", seen in front of Workers AI too.
    if code in (10000, 9109) or (status in (401, 403) and code is None) or status == 401:
        return ConfigError(
            f"Workers AI rejected the API token ({where}); check CLOUDFLARE_API_TOKEN: it must be a "
            "current token with the Workers AI permission for this account"
        )
    if code == 7003:
        return ConfigError(
            f"Workers AI has no such route ({where}); probably a wrong CLOUDFLARE_ACCOUNT_ID "
            f"(now {mask(account_id)}; the dashboard shows it under Workers AI)"
        )
    if code == 7001:
        return ConfigError(
            f"Workers AI does not accept this request at this address ({where}); check CLOUDFLARE_BASE_URL "
            f"(now {base_url})"
        )
    if code in (5007, 3042):
        from wai.catalog.retired import is_cloudflare

        if not is_cloudflare(base_url):  # a server of its own models: retirement is Cloudflare's
            return ConfigError(
                f"{base_url} does not serve the model {model} ({where}); "
                "`wai models --refresh` reads the models it serves"
            )
        return ConfigError(
            f"Workers AI does not know the model {model} ({where}); `wai models` lists the catalog, "
            "and Cloudflare may have retired this one"
        )
    if code in DAILY_ALLOCATION:
        return AllowanceSpent(
            f"the daily free allocation of Workers AI is used up ({where}); try again tomorrow "
            "(it resets at 00:00 UTC) or move the account to the Workers Paid plan"
        )
    if code in (5004, 3003):
        return BackendError(
            f"Workers AI rejected the request's inputs ({where}); check the options ({_ranges()}); "
            "--debug shows the request"
        )
    if code == 3006 or status == 413:
        return BackendError(f"the request is too large for Workers AI ({where}); shorten the prompt")
    if code == 3008 or status == 408:
        return BackendError(
            f"Workers AI gave up running the model ({where}); try again, perhaps with a shorter prompt "
            "or a lower --max-tokens"
        )
    if 300 <= status < 400:
        return ConfigError(
            f"Workers AI answered with a redirect ({where}); check CLOUDFLARE_BASE_URL (now {base_url})"
        )
    if status == 404:
        return ConfigError(
            f"Workers AI found nothing at this address ({where}); check CLOUDFLARE_ACCOUNT_ID "
            f"(now {mask(account_id)}) and CLOUDFLARE_BASE_URL (now {base_url})"
        )
    return BackendError(f"Workers AI {error.refusal} ({where})")


def _vllm_numbers(message: str) -> tuple[int | None, int | None]:
    """The max_tokens vLLM refused and the prompt tokens it counted, where its message says them."""
    too_large = _VLLM_TOO_LARGE.search(message)
    prompt = _VLLM_INPUT.search(message)
    return (
        int(too_large.group(1)) if too_large else None,
        int(prompt.group(1) or prompt.group(2)) if prompt else None,
    )


def _window_named(
    model: str, where: str, limit: int | None, window: int | None, numbers: tuple[int | None, int | None]
) -> WindowError:
    """vLLM's "maximum context length is N tokens", as a window error naming N and what fits."""
    refused, prompt = numbers
    asked = f" (max_tokens {refused})" if refused is not None else ""
    if limit is None:
        sent = f"max_tokens {refused}" if refused is not None else "max_tokens"
        return WindowError(
            f"Workers AI says the prompt and {sent} do not fit {model}'s context window "
            f"({where}); shorten the prompt or lower --max-tokens"
        )
    from wai.catalog.entries import user_catalog_path

    if window is not None and limit < window:
        fix = (
            f"; the catalog says {window}: set context_window and total_context = {limit} for it in "
            f"{user_catalog_path()}"
        )
    elif prompt is not None and prompt < limit:
        fix = (
            f"; its {prompt}-token prompt leaves at most {limit - prompt} for the reply{asked}: "
            f"lower --max-tokens to {limit - prompt} or shorten the prompt"
        )
    else:
        fix = "; shorten the prompt or lower --max-tokens"
    return WindowError(f"Workers AI says {model}'s context window is {limit} tokens ({where}){fix}")


def _retryable_message(error: ApiError) -> str:
    where = error.where()
    if error.code == TIMEOUT:
        return f"Workers AI timed out running the model ({where}); try again, perhaps with a shorter prompt"
    if error.code == 3040:
        return f"Workers AI is out of capacity for this model ({where}); try again shortly or another model"
    if error.status == 429 or error.code == 3021:
        return (
            f"Workers AI's rate limit was reached ({where}; 300 text-generation requests a minute per "
            "account); wait a minute and try again"
        )
    return f"Workers AI failed on its side ({where}); try again later"


def _ranges() -> str:
    """Workers AI's sampling ranges as options: "--temperature 0..5, --top-p 0.001..1, ..."."""
    from wai.backends.workers_ai.sampling import RANGES
    from wai.sampling import OPTIONS_BY_NAME

    return ", ".join(f"{OPTIONS_BY_NAME[name].flag} {span.words('..')}" for name, span in RANGES.items())

"""The page at `/`: its cookie session, and the page itself in a real headless Chromium.

The browser tests drive Debian's chromium (/usr/bin/chromium) with Playwright; they are skipped,
saying why, where either is missing. `make test` installs chromium when it runs as root with
apt-get. Screenshots go to build/test-artifacts/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.serve_process import Served, ServeProcess, sse_data, stream_text, write_catalog
from tests.support.tiny_gguf import SPLIT_SCRIPT, TinyModel, build_tiny_llama

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
# A reply in markdown, a few words per token (each token of a tiny model has one successor).
MARKDOWN_PIECES = [
    "#▁Tiny▁**markdown**",
    "<0x0A>",
    "\n-▁one▁`code`\n-▁two",
    "\n\n<b>not▁bold</b>▁&▁[a▁link](https://example.com/)▁<script>alert(1)</script>",
]


@pytest.fixture(scope="module")
def page_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, TinyModel], looping: TinyModel
) -> Iterator[ServeProcess]:
    folder = tmp_path_factory.mktemp("page")
    markdown = build_tiny_llama(folder / "md.f16.gguf", ftype="f16", script="", pieces=MARKDOWN_PIECES)
    served = [
        Served("@cf/test/tiny-q8_0", tiny_models["q8_0"]),
        Served("@cf/test/markdown", markdown),
        Served("@cf/test/loop", looping, context_window=2000, max_output=30000, total_context=32768),
    ]
    write_catalog(folder / "home", served)
    with ServeProcess(folder / "home", token=None) as server:
        yield server


# The session cookie (no browser needed)


def test_the_page_wants_the_token_once_then_a_cookie(page_server: ServeProcess) -> None:
    origin = page_server.origin
    bare = httpx.get(origin + "/", timeout=30)
    assert bare.status_code == 401 and "?token=" in bare.text
    wrong = httpx.get(origin + "/", params={"token": "wrong"}, timeout=30)
    assert wrong.status_code == 401
    signed = httpx.get(origin + "/", params={"token": page_server.token}, timeout=30)
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    cookie = signed.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert page_server.token not in cookie  # the cookie proves the token was shown; it is not the token
    session = signed.cookies
    page = httpx.get(origin + "/", cookies=session, timeout=30)
    assert page.status_code == 200 and "EventSource" in page.text
    assert "script-src 'sha256-" in page.headers["content-security-policy"]
    stream = httpx.get(
        origin + "/page/stream",
        params={"model": "@cf/test/tiny-q8_0", "prompt": "hi"},
        cookies=session,
        timeout=60,
    )
    text, events = stream_text(sse_data(stream.text))
    assert text == SPLIT_SCRIPT and events[-1]["context_window"] == 300
    # The cookie opens the page's routes only, not the API.
    api = httpx.post(
        page_server.run_url("@cf/test/tiny-q8_0"), json={"prompt": "hi"}, cookies=session, timeout=30
    )
    assert api.status_code == 401


def test_the_page_stream_reports_errors_as_events(page_server: ServeProcess) -> None:
    signed = httpx.get(page_server.origin + "/", params={"token": page_server.token}, timeout=30)
    reply = httpx.get(
        page_server.origin + "/page/stream",
        params={"model": "@cf/test/tiny-q8_0", "prompt": "word " * 400},
        cookies=signed.cookies,
        timeout=60,
    )
    assert reply.status_code == 200  # EventSource cannot read an error reply's body
    _, events = stream_text(sse_data(reply.text))
    assert events[-1]["errors"][0]["code"] == 5021


# In the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        pytest.skip(
            f"Debian's chromium is not installed ({CHROMIUM}): `make test` installs it when run as root with "
            "apt-get; elsewhere `apt-get install chromium`"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (the test extra)"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, page_server: ServeProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 900, "height": 640})
    opened = context.new_page()
    opened.goto(f"{page_server.origin}/?token={page_server.token}")
    yield opened
    context.close()


def wait_for_footer(page: Any, words: str) -> None:
    # A locator wait: the page's Content-Security-Policy forbids the eval behind wait_for_function.
    page.locator("#footer", has_text=words).wait_for(timeout=60_000)


def ask(page: Any, model: str, prompt: str, max_tokens: int | None = None) -> None:
    page.wait_for_selector(f"#model option[value='{model}']", state="attached")
    page.select_option("#model", model)
    if max_tokens is not None:
        page.fill("#max_tokens", str(max_tokens))
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")


def test_the_page_streams_a_reply_with_the_terminals_figures(page: Any, page_server: ServeProcess) -> None:
    assert page.url == page_server.origin + "/"  # the token left the address bar
    assert page.evaluate("document.cookie") == ""  # HttpOnly: the page's script cannot read it
    ask(page, "@cf/test/tiny-q8_0", "where is new york?")
    wait_for_footer(page, "done")
    assert page.inner_text("#reply") == SPLIT_SCRIPT
    footer = page.inner_text("#footer")
    for words in ("done", "out 15/100", "in ", "/300", "first token", "tok/s", "llama.cpp q8_0"):
        assert words in footer, footer
    assert page.inner_text("#windows") == "300 tokens in · 100 out · 400 in all"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "wai-serve-page.png"), full_page=True)
    # The page was opened with the token in its address; no log line holds it.
    assert page_server.token not in page_server.stderr.split("OpenAI clients:", 1)[1]


def test_the_page_renders_markdown_and_never_the_models_html(page: Any) -> None:
    ask(page, "@cf/test/markdown", "show me markdown")
    wait_for_footer(page, "done")
    reply = page.locator("#reply")
    assert reply.locator("h2").inner_text() == "Tiny markdown"
    assert reply.locator("h2 strong").inner_text() == "markdown"
    assert reply.locator("li").all_inner_texts() == ["one code", "two"]
    assert reply.locator("li code").inner_text() == "code"
    link = reply.locator("a")
    assert link.get_attribute("href") == "https://example.com/" and "noopener" in link.get_attribute("rel")
    assert reply.locator("b, script").count() == 0  # the model's HTML is shown as text
    assert "<b>not bold</b>" in reply.inner_text() and "<script>alert(1)</script>" in reply.inner_text()
    page.screenshot(path=str(ARTIFACTS / "wai-serve-page-markdown.png"), full_page=True)


def test_the_reply_fills_piece_by_piece_and_stop_ends_the_decoding(
    page: Any, page_server: ServeProcess
) -> None:
    page.evaluate(
        """() => {
            const reply = document.querySelector('#reply');
            window.lengths = [];
            new MutationObserver(() => window.lengths.push(reply.textContent.length))
                .observe(reply, {childList: true, subtree: true, characterData: true});
        }"""
    )
    ask(page, "@cf/test/loop", "go on", max_tokens=25000)
    for _ in range(600):
        if len([n for n in page.evaluate("window.lengths") if n > 0]) >= 3:
            break
        page.wait_for_timeout(100)
    page.click("#stop")
    assert "interrupted" in page.inner_text("#footer")
    lengths = page.evaluate("window.lengths")
    assert len(set(lengths)) >= 3 and lengths == sorted(lengths)  # it grew, several times, never shrank
    figures = page_server.wait_idle("@cf/test/loop")
    assert figures["last_cancel"]["reason"] == "client gone"
    assert figures["last_cancel"]["pieces"] < 25000

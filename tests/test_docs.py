"""The documentation keeps up with the command line: every option of every command's `--help` is
on that command's page under docs/commands/, every link between the pages resolves, and the
front page stays a front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperCommand, TyperGroup, TyperOption

from wai.app import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND_PAGES = DOCS / "commands"
# `wai`'s own options (--version, the completion ones) are told on the completion page.
TOP_LEVEL_PAGE = COMMAND_PAGES / "completion.md"
FRONT_PAGE_MOST_LINES = 150

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def _group() -> TyperGroup:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    return group


def _documented_options(command: TyperCommand | TyperGroup) -> list[str]:
    """Every spelling of every option `--help` shows, except --help itself."""
    names: list[str] = []
    for param in command.params:
        if isinstance(param, TyperOption) and not param.hidden and param.name != "help":
            names += [*param.opts, *param.secondary_opts]
    return names


def _mentions(text: str, option: str) -> bool:
    # `-m` must stand alone: not the tail of `--model` or a word that holds it
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def _commands() -> list[str]:
    return list(_group().commands)


@pytest.mark.parametrize("name", _commands())
def test_every_option_of_a_command_is_on_its_page(name: str) -> None:
    command = _group().commands[name]
    assert isinstance(command, TyperCommand)
    page = COMMAND_PAGES / f"{name}.md"
    assert page.is_file(), f"`wai {name}` has no reference page: write {page.relative_to(ROOT)}"
    text = page.read_text(encoding="utf-8")
    missing = [option for option in _documented_options(command) if not _mentions(text, option)]
    assert not missing, f"{page.relative_to(ROOT)} does not mention {', '.join(missing)}"


def test_the_top_level_options_are_on_the_completion_page() -> None:
    text = TOP_LEVEL_PAGE.read_text(encoding="utf-8")
    missing = [option for option in _documented_options(_group()) if not _mentions(text, option)]
    assert not missing, f"{TOP_LEVEL_PAGE.relative_to(ROOT)} does not mention {', '.join(missing)}"


def test_every_slash_command_of_chat_is_on_its_page() -> None:
    from wai.commands.chat.commands import COMMANDS

    text = (COMMAND_PAGES / "chat.md").read_text(encoding="utf-8")
    missing = [f"/{name}" for name in COMMANDS if not re.search(rf"`/{re.escape(name)}[ `!]", text)]
    assert not missing, f"docs/commands/chat.md does not mention {', '.join(missing)}"


def test_the_option_check_sees_a_missing_option() -> None:
    # the check above would pass on any page if _mentions matched too loosely
    assert _mentions("| `-m, --model ID` |", "-m")
    assert not _mentions("| `--model ID` |", "-m")
    assert not _mentions("`--max-tokens-cap`", "--max-tokens")
    ask = _group().commands["ask"]
    assert isinstance(ask, TyperCommand)
    assert {"--stats", "--no-stats"} <= set(_documented_options(ask))


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _prose(page: Path) -> str:
    return _FENCE.sub("", page.read_text(encoding="utf-8"))


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(_prose(page)):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _local_links(page: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_prose(page))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("page", _pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_between_the_pages_resolves(page: Path) -> None:
    broken: list[str] = []
    for target in _local_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {', '.join(broken)}"


def test_every_docs_page_is_reachable_from_the_front_page() -> None:
    reached: set[Path] = set()
    todo = [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for target in _local_links(page):
            path = target.partition("#")[0]
            linked = (page.parent / path).resolve()
            if path.endswith(".md") and linked.is_file():
                todo.append(linked)
    unreached = [str(page.relative_to(ROOT)) for page in _pages() if page.resolve() not in reached]
    assert not unreached, f"no link leads to {', '.join(unreached)}"


def test_the_anchor_rule_is_githubs() -> None:
    assert _slug("The catalog: `models.toml`") == "the-catalog-modelstoml"
    assert _slug("Workers AI's refusals") == "workers-ais-refusals"
    assert _slug("Exact windows, from the server's own tokenizer") == (
        "exact-windows-from-the-servers-own-tokenizer"
    )


def test_the_front_page_stays_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= FRONT_PAGE_MOST_LINES, (
        f"README.md has {lines} lines, over {FRONT_PAGE_MOST_LINES}: "
        "put the details on their page under docs/ and link to it"
    )

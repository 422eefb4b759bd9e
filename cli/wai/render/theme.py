"""Colours for the panel: terminal palette colours and attributes only, so they read on dark and light
backgrounds alike (no fixed background colours), and vanish cleanly under NO_COLOR."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.syntax import SyntaxTheme
    from rich.theme import Theme

STYLES: dict[str, str] = {
    # Rich's defaults put inline and block code on a black background; keep the terminal's own.
    "markdown.code": "bold cyan",
    "markdown.code_block": "none",
    "markdown.h1": "bold underline",
    "markdown.h1.border": "cyan",
    "markdown.h2": "bold cyan",
    "markdown.h3": "bold",
    "markdown.h4": "bold italic",
    "markdown.h5": "italic",
    "markdown.h6": "dim italic",
    "markdown.block_quote": "italic",
    "markdown.item.bullet": "bold cyan",
    "markdown.item.number": "cyan",
    "markdown.hr": "dim",
    "markdown.link": "cyan",
    "markdown.link_url": "underline cyan",
    "markdown.table.border": "dim",
    "markdown.table.header": "bold",
    "wai.rule": "dim",
    "wai.title": "bold",
    "wai.meta": "dim",
    "wai.waiting": "dim",
    "wai.spinner": "cyan",
    "wai.thinking": "dim",
    "wai.thinking.label": "dim bold",
    "wai.thinking.fold": "dim italic",
    "wai.footer": "dim",
    "wai.footer.ok": "green",
    "wai.footer.warn": "bold yellow",
    "wai.footer.bad": "bold red",
}


def panel_theme() -> Theme:
    from rich.theme import Theme

    return Theme(STYLES)


def code_theme() -> SyntaxTheme:
    """Pygments token colours in the terminal's palette; comments dim, no background."""
    from pygments.token import (  # type: ignore[import-untyped]
        Comment,
        Error,
        Generic,
        Keyword,
        Name,
        Number,
        Operator,
        String,
        Token,
    )
    from rich.style import Style
    from rich.syntax import ANSISyntaxTheme

    return ANSISyntaxTheme(
        {
            Token: Style(),
            Comment: Style(dim=True, italic=True),
            Comment.Preproc: Style(color="cyan"),
            Keyword: Style(color="magenta", bold=True),
            Keyword.Type: Style(color="cyan"),
            Keyword.Constant: Style(color="magenta"),
            Operator.Word: Style(color="magenta"),
            Name.Builtin: Style(color="cyan"),
            Name.Function: Style(color="blue"),
            Name.Class: Style(color="blue", bold=True),
            Name.Namespace: Style(color="cyan"),
            Name.Exception: Style(color="red"),
            Name.Decorator: Style(color="magenta"),
            Name.Constant: Style(color="red"),
            Name.Attribute: Style(color="cyan"),
            Name.Tag: Style(color="blue"),
            String: Style(color="green"),
            String.Escape: Style(color="cyan"),
            Number: Style(color="yellow"),
            Generic.Deleted: Style(color="red"),
            Generic.Inserted: Style(color="green"),
            Generic.Heading: Style(bold=True),
            Generic.Subheading: Style(color="magenta", bold=True),
            Generic.Prompt: Style(bold=True),
            Generic.Error: Style(color="red"),
            Error: Style(color="red", underline=True),
        }
    )

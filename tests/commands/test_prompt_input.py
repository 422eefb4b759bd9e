from __future__ import annotations

import io

import pytest

from wai.commands.prompt_input import read_prompt
from wai.errors import UsageError


def test_argument_alone() -> None:
    assert read_prompt("hello", None, True) == "hello"


def test_argument_blank_line_then_stdin() -> None:
    assert read_prompt("summarise", io.BytesIO(b"line 1\nline 2\n"), False) == "summarise\n\nline 1\nline 2\n"


def test_dash_means_stdin_only() -> None:
    assert read_prompt("-", io.BytesIO("日本".encode()), False) == "日本"


def test_empty_stdin_with_argument_is_just_the_argument() -> None:
    assert read_prompt("hi", io.BytesIO(b""), False) == "hi"


@pytest.mark.parametrize(
    ("argument", "stdin", "tty"),
    [(None, None, True), ("   ", None, True), (None, b"  \n", False), ("-", None, True)],
)
def test_empty_or_missing_prompt_is_a_usage_error(
    argument: str | None, stdin: bytes | None, tty: bool
) -> None:
    stream = io.BytesIO(stdin) if stdin is not None else None
    with pytest.raises(UsageError) as caught:
        read_prompt(argument, stream, tty)
    assert caught.value.exit_code == 2

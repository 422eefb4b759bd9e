"""The sampling options are declared once (wai.sampling); the command line, `/set`, the request
fields, the transcript and each backend's refusals are made from that declaration."""

from __future__ import annotations

import dataclasses

import pytest
import typer.main
from typer.core import TyperGroup, TyperOption

from wai.app import app
from wai.backends.registry import backend_class, backend_names
from wai.sampling import OPTIONS_BY_NAME, SAMPLING_OPTIONS, Sampling, Span, out_of_range, span_on


def test_every_sampling_field_is_a_declared_option_in_the_same_order() -> None:
    assert [field.name for field in dataclasses.fields(Sampling)] == [o.name for o in SAMPLING_OPTIONS]


def test_each_backends_ranges_name_declared_options_within_what_the_command_line_accepts() -> None:
    for backend_name in backend_names():
        for name, span in backend_class(backend_name).sampling_ranges.items():
            accepted = OPTIONS_BY_NAME[name].accepted
            # A range wider than the command line's could never be reached: its edge would lie.
            assert accepted.low <= span.low and span.high <= accepted.high, (backend_name, name)


def _options(command_name: str) -> dict[str, TyperOption]:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    command = group.commands[command_name]
    return {p.name: p for p in command.params if isinstance(p, TyperOption) and p.name}


@pytest.mark.parametrize("command_name", ["ask", "chat"])
def test_ask_and_chat_take_every_declared_option_with_its_help_and_bounds(command_name: str) -> None:
    options = _options(command_name)
    for option in SAMPLING_OPTIONS:
        made = options[option.name]
        assert made.opts == [option.flag]
        assert made.help == option.help
        kind = made.type
        low = getattr(kind, "min", None)
        high = getattr(kind, "max", None)
        assert (low, high) == (option.accepted.lowest, option.accepted.highest), option.name


def test_the_command_line_hands_the_command_one_sampling_value() -> None:
    from typer.testing import CliRunner

    # --dry-run sends nothing; Workers AI's top_k range refuses 60 once the backend is known.
    done = CliRunner().invoke(
        app, ["ask", "--dry-run", "-m", "@cf/meta/llama-3.1-8b-instruct-fp8", "--top-k", "60", "hi"]
    )
    assert done.exit_code == 2
    assert "'--top-k': 60 is not in the range 1<=x<=50 (Workers AI's range for it)" in done.output


def test_given_keeps_the_options_set_in_their_declared_order() -> None:
    sampling = Sampling(repetition_penalty=1.1, temperature=0.0, seed=7)
    assert list(sampling.given().items()) == [("temperature", 0.0), ("seed", 7), ("repetition_penalty", 1.1)]


def test_a_backends_range_is_told_in_the_words_of_the_command_line() -> None:
    ranges = {"top_p": Span(0.001, 1.0)}
    assert out_of_range(Sampling(top_p=0.0005), ranges, "Workers AI") == (
        "Invalid value for '--top-p': 0.0005 is not in the range 0.001<=x<=1 (Workers AI's range for it)"
    )
    assert out_of_range(Sampling(top_p=0.5, top_k=900), ranges, "Workers AI") is None


def test_set_describes_an_option_within_the_backends_own_range() -> None:
    seed, top_k = OPTIONS_BY_NAME["seed"], OPTIONS_BY_NAME["top_k"]
    assert seed.describe(span_on(seed, {})) == "random seed, 0 or more"
    assert seed.describe(span_on(seed, {"seed": Span(1, 9_999_999_999)})) == "random seed, 1 to 9999999999"
    assert top_k.describe(span_on(top_k, {})) == "top-k sampling"
    penalty = OPTIONS_BY_NAME["repetition_penalty"]
    assert penalty.describe(span_on(penalty, {"repetition_penalty": Span(0.0, 2.0)})) == (
        "repetition penalty, 0 to 2 (1 is off)"
    )

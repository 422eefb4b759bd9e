"""The command-line options of the sampling options, made from their one declaration (wai.sampling).

`with_sampling_options` puts one option per sampling option where a command's `sampling`
parameter stands, and hands the command the values as one `Sampling`. The command line checks
only what no backend could use (`accepted`, and a number at all: Click lets NaN through its
range checks); each backend's own ranges are checked once the backend is known.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Annotated, Any

import typer

from wai.sampling import SAMPLING_OPTIONS, Sampling, SamplingOption


def finite(value: float | None) -> float | None:
    """Click's range checks let NaN through (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number wai can use")
    return value


def _parameter(option: SamplingOption) -> inspect.Parameter:
    span = option.accepted
    typer_option = typer.Option(
        option.flag,
        min=span.lowest,
        max=span.highest,
        callback=finite if option.kind is float else None,
        help=option.help,
    )
    return inspect.Parameter(
        option.name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=None,
        annotation=Annotated[option.kind | None, typer_option],
    )


def with_sampling_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with its `sampling: Sampling` parameter spread into one option per sampling option."""
    # eval_str resolves only annotations written as strings: typing.get_type_hints would walk
    # every one of a command's Annotated options again, at each start.
    signature = inspect.signature(command, eval_str=True)
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name == "sampling":
            parameters.extend(_parameter(option) for option in SAMPLING_OPTIONS)
        else:
            parameters.append(parameter)
    if len(parameters) == len(signature.parameters):
        raise TypeError(f"{command.__name__} takes no `sampling` parameter")

    @functools.wraps(command)
    def run(**values: Any) -> None:
        given = {option.name: values.pop(option.name) for option in SAMPLING_OPTIONS}
        command(**values, sampling=Sampling(**given))

    # Typer reads the options from the signature; the annotations are resolved already.
    run.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run

"""Counts in messages, singular where there is one: "after 1 character", "1 model"."""

from __future__ import annotations


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`number` and `noun`, plural (`noun` + "s" unless given) for every number but 1."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"

"""The sampling ranges Workers AI accepts, checked before anything is sent to it.

Other backends take wider ranges (vLLM takes `top_k` 100 or `seed` 0, llama.cpp any `top_k`),
so the command line checks only what no backend could use; these are the remote backend's own
(its registration's `unsupported`), told in the words the command line used for them.
"""

from __future__ import annotations

from wai.conversation import Sampling

# field -> (option, lowest, highest), as Workers AI's model schemas give them.
RANGES: dict[str, tuple[str, float, float]] = {
    "temperature": ("--temperature", 0.0, 5.0),
    "top_p": ("--top-p", 0.001, 1.0),
    "top_k": ("--top-k", 1, 50),
    "seed": ("--seed", 1, 9_999_999_999),
    "frequency_penalty": ("--frequency-penalty", -2.0, 2.0),
    "presence_penalty": ("--presence-penalty", -2.0, 2.0),
    "repetition_penalty": ("--repetition-penalty", 0.0, 2.0),
}


def unsupported(sampling: Sampling) -> str | None:
    """Why Workers AI would refuse these options, None when it takes them."""
    for field, (option, low, high) in RANGES.items():
        value = getattr(sampling, field)
        if value is not None and not low <= value <= high:
            return (
                f"Invalid value for '{option}': {value} is not in the range {low:g}<=x<={high:g} "
                "(Workers AI's range for it)"
            )
    return None

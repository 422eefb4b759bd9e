"""How a request's sampling options become a llama.cpp sampler chain, for one reply alone or for
each of the sequences decoded together."""

from __future__ import annotations

from wai.llama import native
from wai.sampling import Sampling

# Sampling defaults when a request leaves them unset: Workers AI's temperature (so one model id
# answers alike on both backends), llama.cpp's own top_k, top_p and min_p.
DEFAULT_TEMPERATURE = 0.6
DEFAULT_TOP_K = 40
DEFAULT_TOP_P = 0.95
DEFAULT_MIN_P = 0.05


def sampler_for(
    sampling: Sampling, max_tokens: int, model: native.NativeModel, grammar: str | None = None
) -> native.Sampler:
    """A request's sampler chain, from its sampling options (llama.cpp's defaults where unset)."""
    temperature = DEFAULT_TEMPERATURE if sampling.temperature is None else sampling.temperature
    # Over the reply's own tokens, all of them: llama.cpp's sampler sees only what it generated.
    penalties = native.Penalties(
        last_n=max_tokens,
        repeat=1.0 if sampling.repetition_penalty is None else sampling.repetition_penalty,
        frequency=sampling.frequency_penalty or 0.0,
        presence=sampling.presence_penalty or 0.0,
    )
    return native.Sampler(
        temperature=temperature,
        top_p=DEFAULT_TOP_P if sampling.top_p is None else sampling.top_p,
        top_k=DEFAULT_TOP_K if sampling.top_k is None else sampling.top_k,
        min_p=DEFAULT_MIN_P,
        seed=sampling.seed,
        penalties=penalties,
        n_vocab=model.n_vocab(),
        grammar=grammar,
        model=model,
    )


def unsupported(sampling: Sampling) -> str | None:
    """Why llama.cpp cannot run these options, None when it can (it has every penalty, but its
    repetition penalty divides by the value)."""
    if sampling.repetition_penalty is not None and sampling.repetition_penalty <= 0:
        return (
            f"--repetition-penalty {sampling.repetition_penalty:g} cannot run on the local backend: "
            "llama.cpp divides by it; use a value above 0 (1 is off, above 1 repeats less)"
        )
    return None

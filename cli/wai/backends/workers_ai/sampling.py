"""The sampling ranges Workers AI accepts, as its model schemas give them: the remote backend's
`sampling_ranges`, checked before anything is sent to it, and what `wai serve` (which speaks
Workers AI's API) accepts.

Other backends take wider ranges (vLLM takes `top_k` 100 or `seed` 0, llama.cpp any `top_k`),
so the command line checks only what no backend could use (wai.sampling).
"""

from __future__ import annotations

from wai.sampling import SamplingRanges, Span

RANGES: SamplingRanges = {
    "temperature": Span(0.0, 5.0),
    "top_p": Span(0.001, 1.0),
    "top_k": Span(1, 50),
    "seed": Span(1, 9_999_999_999),
    "frequency_penalty": Span(-2.0, 2.0),
    "presence_penalty": Span(-2.0, 2.0),
    "repetition_penalty": Span(0.0, 2.0),
}

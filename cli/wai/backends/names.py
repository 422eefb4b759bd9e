"""The backends wai knows, by name, in the order "auto" prefers them: the only list there is.

Apart from the registry (which imports each class when first asked for it) so that the command
line can offer the names (--backend's choices, its completion, --help) without importing any
backend's code at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wai.backends.base import Backend

# Every backend, by name: "module:Class". A new backend is one package in backends/ and one line
# here. Tests add one for a block with registry.registered (this very dict, changed in place).
BACKENDS: dict[str, str | type[Backend]] = {
    "remote": "wai.backends.workers_ai.backend:WorkersAI",
    "local": "wai.backends.llama_cpp.backend:LlamaCpp",
    "openai": "wai.backends.openai.backend:OpenAI",
}


def backend_names() -> tuple[str, ...]:
    """Every backend's name, in the order "auto" prefers them."""
    return tuple(BACKENDS)

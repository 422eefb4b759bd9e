"""Messages and the options a turn is sent with (the Request itself is backends/request.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]
ReasoningEffort = Literal["low", "medium", "high"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait for a connection, and for the next event of a stream."""

    connect: float = 10.0
    read: float = 60.0
    read_given: bool = False  # --read-timeout was given: it wins over a provider's `timeout`

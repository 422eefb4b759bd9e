"""Text from a model or a server, made safe to show on a terminal.

A reply may hold escape sequences (by accident or by design): cursor moves that corrupt the
screen, a window title, OSC 52 writing the user's clipboard. On a terminal wai shows text, never
control sequences; into a pipe the reply stays byte for byte.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and C1 controls (ESC and CSI among them).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` without control characters; a CRLF becomes a newline, a lone CR is dropped."""
    return _CONTROLS.sub("", text.replace("\r\n", "\n"))

"""Run the installed `wai` command as a user would: a subprocess, in a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WAI = str(Path(sys.executable).with_name("wai"))


def run_wai(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """`wai ARGS` with this test's environment (WAI_HOME already isolated) plus `env`."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [WAI, *args],
        input=stdin.decode() if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )

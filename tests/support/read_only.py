"""Run a command where some paths refuse every write, root included.

The tests run as root, for whom permission bits refuse nothing. A read-only bind mount does: in a
private mount namespace (`unshare -m`) each path is bound onto itself and remounted read-only, so
the rest of the machine never sees it. Where that is not allowed (no CAP_SYS_ADMIN, no unshare),
`unavailable()` says why and the tests that need it skip.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def read_only_prefix(read_only: Sequence[Path], writable: Sequence[tuple[Path, Path]] = ()) -> list[str]:
    """The words to put before a command so that `read_only` paths (folders or files) refuse
    writes; then each (source, target) of `writable` is bound, writable, onto target."""
    steps = []
    for path in read_only:
        quoted = shlex.quote(str(path))
        steps += [f"mount --bind {quoted} {quoted}", f"mount -o remount,ro,bind {quoted}"]
    for source, target in writable:
        steps.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))}")
    steps.append('exec "$@"')
    return ["unshare", "-m", "sh", "-ec", "\n".join(steps), "sh"]


@functools.cache
def unavailable() -> str | None:
    """None where read-only bind mounts work here; else why not."""
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    with tempfile.TemporaryDirectory(prefix="wai-ro-probe-") as folder:
        probe = Path(folder)
        try:
            done = subprocess.run(
                [*read_only_prefix([probe]), "sh", "-c", f"touch {shlex.quote(str(probe / 'x'))}"],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unshare could not run: {exc}"
        if (probe / "x").exists():
            return "a read-only bind mount still let a write through"
        if "Read-only file system" not in done.stderr:
            return f"no read-only bind mount here: {done.stderr.strip() or done.returncode}"
    return None

"""Backends turn a Request into a stream of Events. Each knows nothing of terminals."""

import sys

# httpx's __init__ imports its own command-line client (httpx._main: click, rich, pygments) when
# they are installed, as they are here, and falls back to a stub when that import fails: about
# half of `import httpx`, on every wai command that talks to a backend, for a CLI wai never runs
# (encode/httpx#3547). Every module that imports httpx is in this package, so marking the module
# absent here, before httpx is first imported, spares it.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

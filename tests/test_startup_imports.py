"""Start-up is part of the product: `wai --help` and every command's `--help` import nothing that
a command imports only to do its work (an HTTP client, llama.cpp, the server, JSON Schema, rich,
SQLite, the catalog, the settings, a backend), each in a fresh interpreter as a user runs it; and
what the command line leaves unbuilt to start faster shows nowhere."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from tests.support.workers_ai_server import Simulation, WorkersAIServer
from wai.app import _commands_needed, app

# Third-party packages (and heavy standard-library ones) that only doing a command's work needs.
HEAVY_PACKAGES = frozenset(
    {
        "httpx",
        "httpcore",
        "anyio",
        "llama_cpp",
        "gguf",
        "numpy",
        "jinja2",
        "starlette",
        "uvicorn",
        "jsonschema",
        "rich",
        "pygments",
        "markdown_it",
        "sqlite3",
        "json",
        "tomllib",
        "ssl",
        "asyncio",
    }
)
# wai's own layers below the command line: reading settings, the catalog or transcripts, planning
# or playing a turn, counting tokens, rendering; the backends beyond their names.
HEAVY_WAI = (
    "wai.settings",
    "wai.catalog",
    "wai.store",
    "wai.turn",
    "wai.tokens",
    "wai.render",
    "wai.schema",
    "wai.pricing",
    "wai.conversation",
    "wai.serve",
    "wai.backends.base",
    "wai.backends.registry",
)
_LOADED = """
import contextlib, io, sys
sys.argv = ["wai", *sys.argv[1:]]
from wai.launch import main
try:
    with contextlib.redirect_stdout(io.StringIO()):
        main()
except SystemExit as stop:
    assert stop.code in (0, None), stop.code
print("\\n".join(sorted(name for name, module in sys.modules.items() if module is not None)))
"""


def _plain_env(**extra: str) -> dict[str, str]:
    """This environment without coverage's start-up hook (under `make coverage` it would import
    json, sqlite3 and more in the child, before wai does anything)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}, **extra}


def _command_names() -> list[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return sorted(group.commands)


@pytest.mark.e2e
@pytest.mark.parametrize("command", [[], *([name] for name in _command_names())], ids=lambda c: " ".join(c))
def test_help_imports_nothing_heavy(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_plain_env(),
    )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "wai.app" in loaded  # the script ran the command line
    heavy = sorted(
        name for name in loaded if name.split(".")[0] in HEAVY_PACKAGES or name.startswith(HEAVY_WAI)
    )
    assert heavy == []


@pytest.mark.e2e
def test_a_whole_ask_into_a_pipe_imports_no_terminal_library() -> None:
    # httpx imports its own command line (click, rich) unless told not to; a reply into a pipe
    # is plain text, with nothing of rich.
    with WorkersAIServer(Simulation(reply_tokens=5)) as server:
        env = _plain_env(
            CLOUDFLARE_BASE_URL=server.base_url,
            CLOUDFLARE_ACCOUNT_ID="acct",
            CLOUDFLARE_API_TOKEN="token",
        )
        done = subprocess.run(
            [sys.executable, "-c", _LOADED, "ask", "-m", "@cf/meta/llama-2-7b-chat-int8", "hi"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "httpx" in loaded  # it did talk to the server
    assert sorted(name for name in loaded if name.split(".")[0] in ("rich", "click", "pygments")) == []
    assert "httpx._main" not in loaded


def _shown(arguments: list[str], *, as_started: bool) -> tuple[int, str]:
    """What `wai ARGUMENTS` prints, with only the commands main() builds for it (`as_started`) or
    with every one built whole."""
    with _commands_needed(["wai", *arguments]) if as_started else contextlib.nullcontext():
        done = CliRunner().invoke(app, arguments, prog_name="wai", env={"COLUMNS": "100"})
    return done.exit_code, done.output


@pytest.mark.parametrize(
    "arguments", [[], ["--help"], ["-h"], ["ask", "--help"], ["chat", "--help"], ["--version"]], ids=repr
)
def test_what_is_left_unbuilt_at_start_shows_nowhere(arguments: list[str]) -> None:
    # `wai` and `wai --help` list the commands without building their options; `wai ask ...`
    # builds ask's alone.
    shown = _shown(arguments, as_started=True)
    assert shown == _shown(arguments, as_started=False)
    assert shown[1].startswith(("Usage: wai", "wai "))

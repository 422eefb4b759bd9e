"""Shell completion: `wai --install-completion` and `--show-completion`, then bash completing wai."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import WAI


def bash(script: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`script` in bash as wai's parent process: Typer finds the shell by walking up the process
    tree, and `bash -c CMD` would exec a lone command, leaving whatever ran the tests (make's sh)."""
    path = f"{Path(WAI).parent}:{os.environ['PATH']}"
    env = {**os.environ, "HOME": str(home), "WAI_HOME": str(home), "PATH": path}
    return subprocess.run(
        ["bash", "-c", f"{script}\nexit $?"], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.e2e
def test_install_completion_then_bash_completes_commands_and_options(tmp_path: Path) -> None:
    installed = bash("wai --install-completion", tmp_path)
    assert installed.returncode == 0, installed.stderr
    script = tmp_path / ".bash_completions" / "wai.sh"
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()

    def complete(*words: str) -> list[str]:
        done = bash(
            f"source '{script}'; COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; "
            '_wai_completion wai; printf "%s\\n" "${COMPREPLY[@]}"',
            tmp_path,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("wai", "as") == ["ask"]
    assert set(complete("wai", "ask", "--no-st")) == {"--no-stream", "--no-stats", "--no-stdin"}
    assert complete("wai", "ask", "--backend", "lo") == ["local"]

    # -m: catalog ids and aliases, providers' models, and for a path its folders and .gguf files
    assert complete("wai", "ask", "-m", "llama-2-i") == ["llama-2-int8"]
    assert "@cf/meta/llama-3.1-8b-instruct" in complete("wai", "chat", "-m", "@cf/meta/llama-3.1")
    (tmp_path / "config.toml").write_text(
        '[providers.gpu]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n', encoding="utf-8"
    )
    assert complete("wai", "tokens", "-m", "gp") == ["gpu:"]  # never refreshed: any model after it
    files = tmp_path / "weights"
    (files / "old").mkdir(parents=True)
    for name in ("tiny.gguf", "Big.GGUF", "notes.txt"):
        (files / name).write_text("", encoding="utf-8")
    listed = [f"{files}/Big.GGUF", f"{files}/old/", f"{files}/tiny.gguf"]
    assert complete("wai", "ask", "-m", f"{files}/") == listed
    assert complete("wai", "ask", "-m", f"{files}/t") == [f"{files}/tiny.gguf"]


@pytest.mark.e2e
def test_show_completion_prints_the_script_for_the_shell_it_runs_in(tmp_path: Path) -> None:
    shown = bash("wai --show-completion", tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "_WAI_COMPLETE=complete_bash" in shown.stdout
    assert not (tmp_path / ".bashrc").exists()  # showing installs nothing

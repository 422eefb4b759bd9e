"""A local conversation continued in a new process loads its saved llama.cpp state and decodes only
what is new; a state that does not fit is ignored; the states stay under their size bound."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.cli import run_wai, run_wai_process
from tests.support.tiny_gguf import SPLIT_SCRIPT, TinyModel

pytest.importorskip("llama_cpp")

ONE = ("--threads", "1")
HISTORY = "tell me about the sea " * 3


def states(home: Path) -> list[Path]:
    return sorted((home / "states").glob("*/*.state"))


def reused(stderr: str) -> tuple[int, int] | None:
    found = re.search(r"(\d+) of the prompt's (\d+) tokens reused", stderr)
    return (int(found[1]), int(found[2])) if found else None


def continue_json(*args: str) -> tuple[str, str]:
    done = run_wai("ask", "-c", "--debug", "--json", *ONE, *args, "and then?")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["text"], done.stderr


def test_a_continued_conversation_loads_its_state_and_answers_as_from_scratch(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    model = str(tiny_models["f16"].path)
    assert run_wai("ask", "-m", model, *ONE, HISTORY).returncode == 0
    (saved,) = states(isolated_home)
    resumed, said = continue_json()
    counts = reused(said)
    assert counts is not None and counts[0] > counts[1] // 2, said  # most of it was not read again
    # The same conversation read from scratch (its state gone) answers the same.
    saved_again = states(isolated_home)
    for path in saved_again:
        path.unlink()
    with_cid = json.loads(run_wai("logs", "--json").stdout)[0]["id"]
    scratch = run_wai("ask", "--cid", with_cid, "--debug", "--json", *ONE, "and then?")
    assert scratch.returncode == 0 and reused(scratch.stderr) is None
    assert json.loads(scratch.stdout)["text"] == resumed == SPLIT_SCRIPT
    assert saved.parent.is_dir()


def test_a_damaged_or_foreign_state_is_ignored(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    model = str(tiny_models["f16"].path)
    assert run_wai("ask", "-m", model, *ONE, HISTORY).returncode == 0
    (saved,) = states(isolated_home)
    saved.write_bytes(b"not a llama.cpp state at all" * 10)
    text, said = continue_json()
    assert text == SPLIT_SCRIPT and reused(said) is None and "did not load" in said
    # Another model's state is never found: the key holds the file and the build.
    assert run_wai("ask", "-m", str(tiny_models["q8_0"].path), *ONE, HISTORY).returncode == 0
    folders = {path.parent for path in states(isolated_home)}
    assert len(folders) == 2


def test_the_states_stay_under_their_bound_oldest_dropped_first(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    model = str(tiny_models["f16"].path)
    assert run_wai("ask", "-m", model, *ONE, HISTORY).returncode == 0
    (first,) = states(isolated_home)
    size = first.stat().st_size
    bound = {"WAI_STATE_CACHE_BYTES": str(int(size * 1.5))}
    assert run_wai("ask", "-m", model, *ONE, HISTORY + "again", env=bound).returncode == 0
    (kept,) = states(isolated_home)
    assert kept != first  # the older one went
    pruned = run_wai("logs", "--prune-cache")
    assert pruned.returncode == 0 and "deleted 1 saved state" in pruned.stderr
    assert states(isolated_home) == []


@pytest.mark.parametrize("value", ["512M", "1e9", "-1", "lots"])
def test_a_bound_that_is_not_a_number_of_bytes_is_an_error_not_the_default(
    tiny_models: dict[str, TinyModel], isolated_home: Path, value: str
) -> None:
    # Read as the 1 GiB default, "512M" kept twice what its writer allowed without a word.
    done = run_wai(
        "ask", "-m", str(tiny_models["f16"].path), *ONE, HISTORY, env={"WAI_STATE_CACHE_BYTES": value}
    )
    assert done.returncode == 2, done.stderr
    assert "WAI_STATE_CACHE_BYTES" in done.stderr and repr(value) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert states(isolated_home) == []


@pytest.mark.parametrize("cap", ["0", "1"])
def test_a_bound_below_one_state_keeps_none(
    tiny_models: dict[str, TinyModel], isolated_home: Path, cap: str
) -> None:
    # The state just written was kept whatever its size: 0 still left a file per conversation.
    model = str(tiny_models["f16"].path)
    bound = {"WAI_STATE_CACHE_BYTES": cap}
    assert run_wai("ask", "-m", model, *ONE, HISTORY, env=bound).returncode == 0
    assert states(isolated_home) == []
    text, said = continue_json()
    assert text == SPLIT_SCRIPT and reused(said) is None  # read whole, as without a state


@pytest.mark.e2e  # llama.cpp aborted the whole process: only a process of its own shows it
@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_state_not_as_it_was_written_is_never_given_to_llama_cpp(
    tiny_models: dict[str, TinyModel], isolated_home: Path, damage: str
) -> None:
    # A cut file (a full disk, a crash) made llama.cpp abort the process (GGML_ASSERT, exit 134)
    # on every `wai ask -c` after it; a flipped byte in the states themselves loads without a word.
    model = str(tiny_models["f16"].path)
    assert run_wai("ask", "-m", model, *ONE, HISTORY).returncode == 0
    (saved,) = states(isolated_home)
    data = bytearray(saved.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:
        data[-100] ^= 0x01
    saved.write_bytes(bytes(data))
    done = run_wai_process("ask", "-c", "--debug", "--json", *ONE, "and then?")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["text"] == SPLIT_SCRIPT
    assert reused(done.stderr) is None and "did not load" in done.stderr

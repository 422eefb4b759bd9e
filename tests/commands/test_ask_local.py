"""`wai ask` on the local backend end to end: the installed command on tiny GGUF models, in a pipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import WAI, run_wai, run_wai_process
from tests.support.tiny_gguf import SPLIT_SCRIPT as SCRIPT
from tests.support.tiny_gguf import SPLIT_WHOLE, TinyModel, build_tiny_llama

pytest.importorskip("llama_cpp")

LOOP = "Hi 🎉!"
ONE = ("--threads", "1")


@pytest.fixture(scope="module")
def looping(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Writes "Hi 🎉!" forever; trained on 32768 tokens so a reply can be long enough to interrupt."""
    path = tmp_path_factory.mktemp("cli-loop") / "loop.q8_0.gguf"
    return build_tiny_llama(path, ftype="q8_0", script=LOOP, loop=True, context_length=32768)


def register(home: Path, model_id: str, gguf: Path | str, **keys: object) -> None:
    """Add an entry to the user's catalog, $WAI_HOME/models.toml."""
    values: dict[str, object] = {"context_window": 300, "max_output": 100, "total_context": 400}
    values.update(keys)
    lines = [f'[models."{model_id}"]', f'gguf = "{gguf}"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    catalog = home / "models.toml"
    previous = catalog.read_text() if catalog.exists() else ""
    catalog.write_text(previous + "\n".join(lines) + "\n\n")


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> None:
    assert done.returncode == code, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wai: error:"), done.stderr
    assert "Traceback" not in done.stderr
    assert "llama_" not in done.stderr and "ggml" not in done.stderr  # none of llama.cpp's own text


# The answer


@pytest.mark.parametrize("ftype", ["f16", "q8_0"])
def test_a_gguf_path_answers_with_the_exact_text_alone(tiny_models: dict[str, TinyModel], ftype: str) -> None:
    done = run_wai("ask", "-m", str(tiny_models[ftype].path), *ONE, "where is new york?")
    assert done.returncode == 0, done.stderr
    assert done.stdout == SCRIPT + "\n"
    assert done.stderr == ""  # llama.cpp logs its loading at length; none of it shows


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("{{ 1 // 0 }}", "ZeroDivisionError"),
        ("{% if %}", "not valid Jinja"),
        ("{{ a.b.c }}", "undefined"),
        ('{{ "\\ud800" }}', "not valid Unicode"),
        ("{{ 7 ** 999999999 }}", "a power of 999999999"),
    ],
)
def test_a_chat_template_that_fails_is_one_line_exit_2(tmp_path: Path, template: str, said: str) -> None:
    model = build_tiny_llama(tmp_path / "t.gguf", ftype="f16", script="Hi", chat_template=template)
    for command in ("ask", "tokens"):
        done = run_wai(command, "-m", str(model.path), "hello")
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("wai: error: the model's chat template"), done.stderr
        assert said in lines[0]


def test_a_model_in_the_users_catalog_is_asked_by_id(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    # A relative gguf is found in the models folder.
    (isolated_home / "models").mkdir()
    (isolated_home / "models" / "tiny.gguf").symlink_to(tiny_models["q8_0"].path)
    register(isolated_home, "my-tiny", "tiny.gguf", precision="q8_0", aliases=["tn"])
    for name in ("my-tiny", "tn"):
        done = run_wai("ask", "-m", name, *ONE, "hi")
        assert done.returncode == 0, done.stderr
        assert (done.stdout, done.stderr) == (SCRIPT + "\n", "")


def test_debug_shows_llama_cpp_and_the_backends_facts(tiny_models: dict[str, TinyModel]) -> None:
    done = run_wai("ask", "-m", str(tiny_models["q8_0"].path), *ONE, "--debug", "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout == SCRIPT + "\n"
    assert "llama_model_loader" in done.stderr or "print_info" in done.stderr
    assert "backend local" in done.stderr and "'threads': 1" in done.stderr


# Precision


@pytest.mark.parametrize("ftype", ["f16", "q8_0"])
def test_json_reports_the_files_precision_and_exact_usage(
    tiny_models: dict[str, TinyModel], ftype: str
) -> None:
    model = tiny_models[ftype]
    done = run_wai("ask", "-m", str(model.path), *ONE, "--json", "hi")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["text"] == SCRIPT
    assert (result["backend"], result["precision"], result["finish_reason"]) == ("local", ftype, "stop")
    assert result["usage"]["completion_tokens"] == len(model.pieces)
    assert result["usage"]["exact"] is True
    assert result["timings"]["load_s"] > 0 and result["timings"]["first_token_s"] is not None


def test_models_lists_each_files_precision(tiny_models: dict[str, TinyModel], isolated_home: Path) -> None:
    register(isolated_home, "tiny-f16", tiny_models["f16"].path, precision="f16")
    register(isolated_home, "tiny-q8", tiny_models["q8_0"].path, precision="q8_0")
    done = run_wai("models", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["id"]: row for row in json.loads(done.stdout)["models"]}
    assert rows["tiny-f16"]["precision"] == "f16" and rows["tiny-q8"]["precision"] == "q8_0"
    for model_id in ("tiny-f16", "tiny-q8"):
        assert rows[model_id]["backends"]["local"]["available"] is True
        assert rows[model_id]["backends"]["remote"]["available"] is False


def test_a_catalog_precision_the_file_contradicts_is_a_warning(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    register(isolated_home, "says-f16", tiny_models["q8_0"].path, precision="f16")
    done = run_wai("ask", "-m", "says-f16", *ONE, "--json", "hi")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["precision"] == "q8_0"  # the file's own type, not the entry's
    warnings = [line for line in done.stderr.splitlines() if line.startswith("wai: warning:")]
    assert len(warnings) == 1 and "q8_0" in warnings[0] and "f16" in warnings[0], done.stderr
    listed = {row["id"]: row for row in json.loads(run_wai("models", "--json").stdout)["models"]}
    assert listed["says-f16"]["precision"] == "q8_0"


# Caps and windows


def test_the_output_cap_is_length_with_a_warning_and_exit_0(tiny_models: dict[str, TinyModel]) -> None:
    path = str(tiny_models["f16"].path)
    done = run_wai("ask", "-m", path, *ONE, "--max-tokens", "4", "--json", "hi")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["text"], result["finish_reason"]) == ("Hello, world!", "length")
    assert result["usage"]["completion_tokens"] == 4
    assert "output cap (4 tokens)" in done.stderr
    # In a pipe: the text so far, a newline, and the same warning; the cap falls inside 日.
    piped = run_wai("ask", "-m", path, *ONE, "--max-tokens", "9", "hi")
    assert (piped.returncode, piped.stdout) == (0, "Hello, world! é\n")
    assert "output cap (9 tokens)" in piped.stderr


def test_the_catalogs_max_output_caps_the_reply(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    register(isolated_home, "short", tiny_models["q8_0"].path, max_output=4)
    done = run_wai("ask", "-m", "short", *ONE, "--json", "hi")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["text"], result["finish_reason"]) == ("Hello, world!", "length")
    assert result["windows"]["max_tokens"] == 4


def test_a_prompt_over_the_window_is_exit_3_before_llama_cpp(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    # The file's trained context is 512 tokens: 384 for the prompt, 128 for the reply.
    done = run_wai("ask", "-m", str(tiny_models["q8_0"].path), *ONE, "-", stdin=b"x" * 600)
    assert_one_line_error(done, 3)
    assert "384" in done.stderr and "tokens" in done.stderr
    register(isolated_home, "narrow", tiny_models["q8_0"].path, context_window=50)
    narrow = run_wai("ask", "-m", "narrow", *ONE, "x" * 80)
    assert_one_line_error(narrow, 3)
    assert "50" in narrow.stderr


def test_an_entry_wider_than_its_files_trained_context_answers_within_the_file(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    # The entry allows 2048 tokens in and 1800 out; the file was trained on 512. The context that
    # counts is the smaller one, and the default reply room is what it leaves after the prompt.
    register(
        isolated_home,
        "wide",
        tiny_models["q8_0"].path,
        context_window=2048,
        max_output=1800,
        total_context=2048,
    )
    done = run_wai("ask", "-m", "wide", *ONE, "--json", "hello there")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["text"] == SCRIPT
    assert 0 < result["windows"]["max_tokens"] <= 512 - result["usage"]["prompt_tokens"]
    assert "trained on 512" in done.stderr  # the disagreement is still told

    dry = run_wai("ask", "-m", "wide", *ONE, "--dry-run", "hello there")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["prompt_tokens"] + planned["max_tokens"] <= 512

    # An explicit --max-tokens the file cannot hold is lowered, with a warning, as on any model.
    asked = run_wai("ask", "-m", "wide", *ONE, "--max-tokens", "1000", "--json", "hello there")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["windows"]["max_tokens"] <= 512
    assert "--max-tokens lowered to" in asked.stderr and "512-token context" in asked.stderr

    # A prompt the file cannot hold is still refused before llama.cpp: exit 3, one line.
    long = run_wai("ask", "-m", "wide", *ONE, "-", stdin=b"x" * 1400)
    assert_one_line_error(long, 3)
    assert "512" in long.stderr


# Files and backends that cannot serve


def test_a_missing_file_is_exit_2_naming_it(tmp_path: Path, isolated_home: Path) -> None:
    missing = tmp_path / "nowhere" / "model.Q8_0.gguf"
    done = run_wai("ask", "-m", str(missing), *ONE, "hi")
    assert_one_line_error(done, 2)
    assert str(missing) in done.stderr
    register(isolated_home, "gone", missing)
    by_id = run_wai("ask", "-m", "gone", *ONE, "hi")
    assert_one_line_error(by_id, 2)
    assert str(missing) in by_id.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"<!DOCTYPE html><html><body>Not found</body></html>" * 3, "web page"),
        (b"\x00" * 4096, "not a GGUF"),
    ],
)
def test_a_junk_file_is_exit_1_in_one_line(tmp_path: Path, content: bytes, expected: str) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(content)
    done = run_wai("ask", "-m", str(junk), *ONE, "hi")
    assert_one_line_error(done, 1)
    assert expected in done.stderr


def test_a_truncated_file_is_exit_1_in_one_line(tmp_path: Path, tiny_models: dict[str, TinyModel]) -> None:
    whole = tiny_models["f16"].path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[: len(whole) // 2])
    done = run_wai("ask", "-m", str(cut), *ONE, "hi")
    assert_one_line_error(done, 1)
    assert "truncated" in done.stderr


def test_remote_backend_for_a_local_only_model_is_exit_2(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    register(isolated_home, "local-only", tiny_models["q8_0"].path)
    credentials = {"CLOUDFLARE_ACCOUNT_ID": "acct", "CLOUDFLARE_API_TOKEN": "tok"}
    for name in (str(tiny_models["q8_0"].path), "local-only"):
        done = run_wai("ask", "-m", name, "--backend", "remote", "hi", env=credentials)
        assert_one_line_error(done, 2)
        assert "not served by Workers AI" in done.stderr


# Ctrl-C


def interrupt_when_the_reply_begins(looping: TinyModel, home: Path) -> tuple[int, str, str, float]:
    """Ask for a 30000-token reply, send SIGINT as its first bytes arrive.

    Returns the exit code, stdout, stderr and the seconds from the signal to the exit.
    """
    register(home, "endless", looping.path, context_window=1000, max_output=30000, total_context=32768)
    child = subprocess.Popen(
        [WAI, "ask", "-m", "endless", *ONE, "--max-tokens", "30000", "hi"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    try:
        received = os.read(child.stdout.fileno(), 4096)
        assert received, child.stderr.read().decode()
        child.send_signal(signal.SIGINT)
        interrupted = time.perf_counter()
        rest, err = child.communicate(timeout=20)
        stopped_in = time.perf_counter() - interrupted
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, (received + rest).decode("utf-8"), err.decode("utf-8"), stopped_in


@pytest.mark.e2e
def test_ctrl_c_stops_the_reply_keeps_the_text_and_exits_130(looping: TinyModel, isolated_home: Path) -> None:
    code, out, err, stopped_in = interrupt_when_the_reply_begins(looping, isolated_home)
    assert code == 130, err
    text = out.rstrip("\n")
    assert text and (LOOP * (len(text) // len(LOOP) + 1)).startswith(text)  # whole characters, in order
    assert len(text) < len(LOOP) * (30000 // 7)  # short of the cap (7 tokens a round): it was stopped
    assert "interrupted" in err and "Traceback" not in err
    assert stopped_in < 5


@pytest.mark.e2e
def test_ctrl_c_right_after_a_token_still_ends_the_text_with_a_newline(
    looping: TinyModel, isolated_home: Path
) -> None:
    # The signal is sent as the first bytes are read, so it lands right after a token's flush.
    code, out, err, _ = interrupt_when_the_reply_begins(looping, isolated_home)
    assert code == 130, err
    assert out.endswith("\n") and not out.endswith("\n\n")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "template", ["{% for m in messages %}{{ m['content'] }", "{{ messages | nosuchfilter }}"]
)
def test_a_chat_template_that_does_not_compile_is_exit_2_in_one_line(tmp_path: Path, template: str) -> None:
    model = build_tiny_llama(tmp_path / "badtpl.gguf", ftype="f16", script="hi", chat_template=template)
    for command in (("ask", *ONE), ("tokens",)):
        done = run_wai(*command, "-m", str(model.path), "hello")
        assert_one_line_error(done, 2)
        assert "chat template" in done.stderr and "Jinja" in done.stderr


def test_a_bare_file_name_is_found_in_the_models_folder(
    tiny_models: dict[str, TinyModel], isolated_home: Path
) -> None:
    folder = isolated_home / "models"
    folder.mkdir(exist_ok=True)
    (folder / "mine.gguf").write_bytes(tiny_models["q8_0"].path.read_bytes())
    done = run_wai("ask", *ONE, "-m", "mine.gguf", "hi", env={"WAI_MODELS_DIR": str(folder)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == SCRIPT + "\n"


def test_a_folder_or_nothing_after_m_is_exit_2(tmp_path: Path) -> None:
    assert_one_line_error(run_wai("ask", "-m", str(tmp_path), "hi"), 2)
    assert_one_line_error(run_wai("ask", "-m", "", "hi"), 2)


@pytest.mark.e2e
def test_a_file_that_declares_no_trained_context_runs_at_its_windows(tmp_path: Path) -> None:
    model = build_tiny_llama(
        tmp_path / "ctx0.gguf", ftype="f16", script=SCRIPT, whole=SPLIT_WHOLE, context_length=0
    )
    done = run_wai("ask", *ONE, "-m", str(model.path), "hi")
    assert done.returncode == 0, done.stderr
    assert done.stdout == SCRIPT + "\n"


def test_gpu_layers_on_a_build_without_offload_is_a_warning(tiny_models: dict[str, TinyModel]) -> None:
    from wai.llama import native

    if native.supports_gpu_offload():
        pytest.skip("this llama.cpp build can offload: the flag takes effect")
    done = run_wai("ask", *ONE, "--gpu-layers", "5", "-m", str(tiny_models["q8_0"].path), "hi")
    assert done.returncode == 0 and done.stdout == SCRIPT + "\n"
    assert "--gpu-layers 5 has no effect" in done.stderr


def test_continue_after_a_relative_gguf_path_works_from_another_folder(
    tiny_models: dict[str, TinyModel], tmp_path: Path
) -> None:
    here = tmp_path / "here"
    elsewhere = tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    (here / "mine.gguf").write_bytes(tiny_models["f16"].path.read_bytes())

    def ask(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([WAI, "ask", *ONE, *args], cwd=cwd, capture_output=True, text=True, timeout=60)

    first = ask(here, "-m", "./mine.gguf", "hi")
    assert first.returncode == 0, first.stderr
    again = ask(elsewhere, "-c", "and again")
    assert again.returncode == 0, again.stderr
    assert again.stdout == SCRIPT + "\n"
    listed = json.loads(run_wai("logs", "--json").stdout)
    assert listed[0]["model"] == str((here / "mine.gguf").resolve()) and listed[0]["turns"] == 2


def test_models_go_to_the_data_folder_and_the_former_folder_is_still_read(
    tiny_models: dict[str, TinyModel], tmp_path: Path
) -> None:
    # No WAI_HOME: the platform's folders, here under XDG_CONFIG_HOME and XDG_DATA_HOME.
    env = {
        "WAI_HOME": "",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }

    def builtin_row() -> dict[str, object]:
        done = run_wai("models", "--json", env=env)
        assert done.returncode == 0, done.stderr
        rows: dict[str, dict[str, object]] = {row["id"]: row for row in json.loads(done.stdout)["models"]}
        return rows["smollm2-135m-instruct"]

    assert builtin_row()["gguf"] == str(
        tmp_path / "data" / "wai" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    former = tmp_path / "config" / "wai" / "models"
    former.mkdir(parents=True)
    (former / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(tiny_models["f16"].path.read_bytes())
    row = builtin_row()
    assert row["gguf"] == str(former / "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert row["backends"] == {
        "remote": {"available": False, "reason": "not served by Workers AI"},
        "local": {"available": True, "reason": None},
    }
    done = run_wai("ask", *ONE, "-m", "smollm2", "--max-tokens", "20", "hi", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == SCRIPT + "\n"


@pytest.mark.parametrize("threads", ["513", "100000", "2147483647"])
def test_more_threads_than_llama_cpp_runs_is_a_usage_error_not_a_crash(
    tiny_models: dict[str, TinyModel], threads: str
) -> None:
    # A process of its own: llama.cpp given 100000 threads crashed (SIGSEGV, or abort on bad_alloc).
    done = run_wai_process("ask", "--json", "-m", str(tiny_models["q8_0"].path), "--threads", threads, "hi")
    assert done.returncode == 2, done.stderr
    assert "'--threads'" in done.stderr and "1<=x<=512" in done.stderr
    assert json.loads(done.stdout)["error"]["code"] == "usage"

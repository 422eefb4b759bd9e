"""Penalties and raw prompts through the installed `wai`: sent to Workers AI within its ranges,
mapped onto llama.cpp locally, refused in one line where llama.cpp cannot follow."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_wai
from tests.support.tiny_gguf import TinyModel, build_tiny_llama
from tests.support.workers_ai_server import WorkersAIServer

MODEL = "@cf/meta/llama-3.1-8b-instruct-fp8"
ONE = ("--threads", "1")


# -- remote ------------------------------------------------------------------------------------


def test_penalties_reach_the_body_under_workers_ai_names(server: WorkersAIServer) -> None:
    done = run_wai(
        "ask", "-m", MODEL, "--frequency-penalty", "-2", "--presence-penalty", "1.5",
        "--repetition-penalty", "1.1", "hello",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    body = server.requests[0].json
    assert (body["frequency_penalty"], body["presence_penalty"], body["repetition_penalty"]) == (-2, 1.5, 1.1)


def test_penalties_not_given_are_not_sent(server: WorkersAIServer) -> None:
    run_wai("ask", "-m", MODEL, "hello")
    body = server.requests[0].json
    assert not {"frequency_penalty", "presence_penalty", "repetition_penalty", "raw", "prompt"} & set(body)


@pytest.mark.parametrize(
    "option",
    [
        ("--frequency-penalty", "2.5"),
        ("--presence-penalty", "-3"),
        ("--repetition-penalty", "-0.1"),
        ("--repetition-penalty", "2.01"),
        ("--presence-penalty", "nan"),
    ],
)
def test_penalties_outside_workers_ai_ranges_are_usage_errors(option: tuple[str, str]) -> None:
    done = run_wai("ask", "-m", MODEL, *option, "hello")
    assert done.returncode == 2
    assert option[0] in done.stderr
    assert "Traceback" not in done.stderr


def test_raw_sends_the_prompt_verbatim_as_prompt(server: WorkersAIServer) -> None:
    text = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
    done = run_wai("ask", "-m", MODEL, "--raw", "-", stdin=text.encode())
    assert done.returncode == 0, done.stderr
    body = server.requests[0].json
    assert body["prompt"] == text and body["raw"] is True
    assert "messages" not in body


def test_raw_dry_run_shows_the_verbatim_prompt_counted_without_a_template() -> None:
    plain = json.loads(run_wai("ask", "--dry-run", "-m", MODEL, "hello there").stdout)
    raw = json.loads(run_wai("ask", "--dry-run", "--raw", "-m", MODEL, "hello there").stdout)
    assert raw["raw"] is True and plain["raw"] is False
    assert raw["prompt"] == "hello there"
    assert raw["prompt_format"].startswith("verbatim")
    assert raw["prompt_tokens"] < plain["prompt_tokens"]  # no template around it


@pytest.mark.parametrize("extra", [("-s", "be brief"), ("-c",), ("--cid", "abc")])
def test_raw_cannot_take_a_system_prompt_or_continue_a_conversation(extra: tuple[str, ...]) -> None:
    done = run_wai("ask", "--raw", "-m", MODEL, *extra, "hello")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--raw sends" in lines[0]


# -- local ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def looping(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Writes "Hi 🎉!" over and over: every token repeats, so penalties have something to act on."""
    pytest.importorskip("llama_cpp")
    path = tmp_path_factory.mktemp("fields-loop") / "loop.f16.gguf"
    return build_tiny_llama(path, ftype="f16", script="Hi 🎉!", loop=True, context_length=1024)


def local_reply(model: TinyModel, *options: str) -> str:
    done = run_wai(
        "ask", "-m", str(model.path), *ONE, "--temperature", "0", "--max-tokens", "160", *options, "go"
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_local_penalties_change_what_llama_cpp_picks(looping: TinyModel) -> None:
    plain = local_reply(looping)
    assert plain.startswith("Hi 🎉!" * 20)  # the loop, cut at the cap
    penalised = local_reply(looping, "--frequency-penalty", "2", "--presence-penalty", "2")
    # Each repeat costs the looping token 2 more; after some repeats it no longer leads.
    assert penalised.startswith("Hi 🎉!" * 5)
    assert penalised != plain


def test_a_local_repetition_penalty_of_0_is_refused_before_loading(looping: TinyModel) -> None:
    done = run_wai("ask", "-m", str(looping.path), "--repetition-penalty", "0", "go")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "wai: error: --repetition-penalty 0 cannot run on the local backend: llama.cpp divides by it; "
        "use a value above 0 (1 is off, above 1 repeats less)"
    ]


def test_local_raw_sends_the_text_verbatim_with_its_special_tokens(tiny_models: dict[str, TinyModel]) -> None:
    model = tiny_models["q8_0"]
    prompt = "<|user|>hi<|end|><|assistant|>"
    done = run_wai("ask", "-m", str(model.path), *ONE, "--raw", "--json", prompt)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["text"] == model.script  # the template's markers were read as the markers
    # BOS, the three markers as one token each, and "hi" (SentencePiece's leading space, "h", "i"):
    # as text the markers alone would be 24 byte tokens, and a template would add more.
    assert result["usage"]["prompt_tokens"] == 7
    dry = json.loads(
        run_wai("ask", "--dry-run", "--backend", "local", "-m", str(model.path), "--raw", prompt).stdout
    )
    assert dry["prompt_tokens"] == 7

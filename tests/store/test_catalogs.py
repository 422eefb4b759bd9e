"""The refreshed-catalog store: what a refresh keeps, and what it means as catalog entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from wai.catalog.entries import ModelSpec, load_catalog
from wai.errors import ConfigError
from wai.store import catalogs
from wai.store.catalogs import ModelFacts, RefreshedCatalog

WHEN = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def refreshed(*models: ModelFacts) -> RefreshedCatalog:
    return RefreshedCatalog(name="workers-ai", fetched_at=WHEN, source="https://example.test", models=models)


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("@cf/meta/llama-2-7b-chat-int8", "llama-2"),
        ("@hf/meta-llama/meta-llama-3-8b-instruct", "llama-3"),
        ("@cf/meta/llama-3.3-70b-instruct-fp8-fast", "llama-3"),
        ("@cf/meta/llama-3.2-11b-vision-instruct", "llama-3"),
        ("@cf/qwen/qwen2.5-coder-32b-instruct", "qwen2"),
        ("@cf/qwen/qwq-32b", "qwen2"),
        ("@cf/qwen/qwen3-30b-a3b-fp8", "qwen2"),
        ("@cf/deepseek-ai/deepseek-r1-distill-qwen-32b", "qwen2"),
        ("@cf/meta/llama-4-scout-17b-16e-instruct", None),  # another tokenizer
        ("@cf/meta/llama-guard-3-8b", None),  # Llama 3's vocabulary, but its own long template
        ("@cf/openai/gpt-oss-120b", None),
        ("@cf/google/gemma-4-26b-a4b-it", None),
    ],
)
def test_the_family_is_guessed_only_where_a_vocabulary_fits(model_id: str, family: str | None) -> None:
    assert catalogs.guess_family(model_id) == family


@pytest.mark.parametrize(
    ("window", "output"), [(400, 200), (7968, 3984), (16384, 8192), (262144, 8192), (1, 1)]
)
def test_the_output_window_is_half_the_window_at_most_8192(window: int, output: int) -> None:
    assert catalogs.output_window(window) == output


@pytest.mark.parametrize(("window", "output"), [(400, 200), (24000, 12000), (65536, 32768), (262144, 32768)])
def test_a_reasoning_models_output_window_is_half_the_window_at_most_32768(window: int, output: int) -> None:
    assert catalogs.output_window(window, reasoning=True) == output


def test_a_refresh_survives_the_round_trip(isolated_home: Path) -> None:
    saved = refreshed(
        ModelFacts(
            "@cf/a/b", window=100, retirement="2026-05-30", capabilities=("reasoning",), description="B."
        ),
        ModelFacts("@cf/a/c"),
    )
    path = catalogs.save(saved)
    assert path == isolated_home / "catalogs" / "workers-ai.json"
    assert catalogs.load("workers-ai") == saved
    assert catalogs.load("another") is None


def test_saving_over_an_earlier_refresh_replaces_it_whole(isolated_home: Path) -> None:
    catalogs.save(refreshed(ModelFacts("@cf/a/old", window=10)))
    catalogs.save(refreshed(ModelFacts("@cf/a/new", window=20)))
    loaded = catalogs.load("workers-ai")
    assert loaded is not None and [m.id for m in loaded.models] == ["@cf/a/new"]
    assert sorted(p.name for p in (isolated_home / "catalogs").iterdir()) == ["workers-ai.json"]


def test_a_store_that_cannot_be_written_is_one_line_and_the_old_one_stays(isolated_home: Path) -> None:
    catalogs.save(refreshed(ModelFacts("@cf/a/old", window=10)))
    (isolated_home / "catalogs" / "workers-ai.json").unlink()
    (isolated_home / "catalogs" / "workers-ai.json").mkdir()  # a directory where the file goes
    with pytest.raises(ConfigError) as caught:
        catalogs.save(refreshed(ModelFacts("@cf/a/new", window=20)))
    assert "cannot save the refreshed catalog" in str(caught.value)
    assert sorted(p.name for p in (isolated_home / "catalogs").iterdir()) == ["workers-ai.json"]


@pytest.mark.parametrize(
    "text",
    ["{", '{"format": 99}', '{"format": 1, "fetched_at": "2026-11-01T12:00:00", "models": []}', "[]"],
)
def test_a_damaged_store_is_an_error_of_its_own(isolated_home: Path, text: str) -> None:
    (isolated_home / "catalogs").mkdir()
    (isolated_home / "catalogs" / "workers-ai.json").write_text(text)
    with pytest.raises(catalogs.StoredCatalogError):
        catalogs.load("workers-ai")
    catalog = load_catalog()  # still loads, with a note
    assert catalog.notes and "workers-ai.json" in catalog.notes[0]
    assert "@cf/meta/llama-2-7b-chat-int8" in catalog.models


def test_the_age_is_said_in_words() -> None:
    saved = refreshed()
    assert saved.age(WHEN + timedelta(seconds=30)) == "less than a minute"
    assert saved.age(WHEN + timedelta(minutes=1)) == "1 minute"
    assert saved.age(WHEN + timedelta(hours=5, minutes=3)) == "5 hours"
    assert saved.age(WHEN + timedelta(days=3, hours=23)) == "3 days"


@pytest.mark.parametrize(
    ("value", "day"),
    [
        ("2026-05-30", "2026-05-30"),
        ("2026-05-30T00:00:00Z", "2026-05-30"),
        ("2026-05-30 10:00", "2026-05-30"),
    ],
)
def test_a_retirement_day_is_read_from_a_date_or_a_timestamp(value: str, day: str) -> None:
    assert catalogs.parse_day(value) == day


def test_entries_for_known_models_carry_only_what_the_refresh_says() -> None:
    entries = catalogs.catalog_entries(
        refreshed(
            ModelFacts("@cf/known/x", window=1000, capabilities=("reasoning",)),
            ModelFacts("@cf/known/y"),
            ModelFacts("@cf/new/z", window=1000, retirement="2027-01-01", description="Z does. More."),
            ModelFacts("@cf/new/no-window"),
        ),
        {"@cf/known/x": object(), "@cf/known/y": object()},
    )
    assert entries == {
        "@cf/known/x": {
            "remote": True,
            "context_window": 1000,
            "total_context": 1000,
            "capabilities": ["reasoning"],
            "reasoning": True,
        },
        "@cf/known/y": {"remote": True},
        "@cf/new/z": {
            "remote": True,
            "context_window": 1000,
            "total_context": 1000,
            "retirement": "2027-01-01",
            "max_output": 500,
            "description": "Z does.",
        },
    }


def test_a_refresh_keeps_the_json_mode_no_listing_states() -> None:
    known = {"@cf/known/x": ModelSpec("@cf/known/x", 10, 10, 20, True, capabilities=("json_mode",))}
    entries = catalogs.catalog_entries(
        refreshed(ModelFacts("@cf/known/x", window=1000, capabilities=("function_calling",))), known
    )
    assert entries["@cf/known/x"]["capabilities"] == ["function_calling", "json_mode"]

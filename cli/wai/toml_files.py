"""Reading wai's TOML files (config.toml, models.toml): every way one can be unreadable is one line."""

from __future__ import annotations

import tomllib
from pathlib import Path

from wai.errors import ConfigError


def read_toml(path: Path) -> dict[str, object] | None:
    """The file's tables, or None when it does not exist. Raises ConfigError naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return parse_toml(data, str(path))


def parse_toml(data: bytes, where: str) -> dict[str, object]:
    """TOML from bytes: not UTF-8 and not TOML are both a ConfigError naming `where`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: not valid UTF-8 (byte {exc.start + 1} is 0x{data[exc.start]:02x})",
            hint="save the file as UTF-8",
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})", hint="fix or remove the file") from None

"""The agent's settings: a TOML file, then ``SM_AGENT_*`` variables, then flags.

Each later source overrides the earlier ones, key by key. The file is
optional at its default location and required when named explicitly::

    # /etc/sm-agent/agent.toml
    server = "https://core.example.net:8101"   # the core, for enrollment
    enrollment_key = "sme1.…"                  # removed after enrolling
    state_dir = "/var/lib/sm-agent"
    gateway_url = "wss://core.example.net:8104/agent/ws"   # optional override
    log_level = "INFO"

Environment: ``SM_AGENT_CONFIG`` (the file), ``SM_AGENT_SERVER``,
``SM_AGENT_ENROLLMENT_KEY``, ``SM_AGENT_STATE_DIR``, ``SM_AGENT_GATEWAY_URL``,
``SM_AGENT_LOG_LEVEL``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ENV_PREFIX = "SM_AGENT_"
KEYS = ("server", "enrollment_key", "state_dir", "gateway_url", "log_level")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

Source = Literal["default", "file", "env", "flag"]


class SettingsError(ValueError):
    """The configuration cannot be read or holds a wrong value."""


def _privileged() -> bool:
    return os.name == "posix" and os.geteuid() == 0


def default_config_path(env: Mapping[str, str]) -> Path:
    if _privileged():
        return Path("/etc/sm-agent/agent.toml")
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sm-agent" / "agent.toml"


def default_state_dir(env: Mapping[str, str]) -> Path:
    if _privileged():
        return Path("/var/lib/sm-agent")
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sm-agent"


@dataclass(frozen=True)
class AgentSettings:
    """Where the agent keeps its state and how it reaches the core."""

    config_path: Path
    state_dir: Path
    server: str | None
    enrollment_key: str | None
    gateway_url: str | None
    log_level: str
    # Where the enrollment key came from: only a key read from the file is
    # removed from it after enrolling.
    enrollment_key_source: Source


def _read_file(path: Path, explicit: bool) -> dict[str, str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise SettingsError(f"configuration file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        document = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from exc
    values: dict[str, str] = {}
    for key, value in document.items():
        if key not in KEYS:
            raise SettingsError(f"{path}: unknown setting {key!r} (known: {', '.join(KEYS)})")
        if not isinstance(value, str):
            raise SettingsError(f"{path}: {key} must be a string")
        values[key] = value
    return values


def load_settings(
    flags: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
) -> AgentSettings:
    """Settings from the file, the environment and ``flags`` (keys of ``KEYS`` + ``config``).

    A flag whose value is None was not given.
    """
    given: dict[str, str] = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env

    explicit_config = given.get("config") or env.get(ENV_PREFIX + "CONFIG")
    config_path = Path(explicit_config) if explicit_config else default_config_path(env)
    merged: dict[str, str] = {}
    sources: dict[str, Source] = {}
    layers: list[tuple[Source, Mapping[str, str]]] = [
        ("file", _read_file(config_path, explicit=bool(explicit_config))),
        ("env", {k: env[ENV_PREFIX + k.upper()] for k in KEYS if ENV_PREFIX + k.upper() in env}),
        ("flag", {k: v for k, v in given.items() if k in KEYS}),
    ]
    for source, layer in layers:
        for key, value in layer.items():
            merged[key] = value
            sources[key] = source

    log_level = merged.get("log_level", "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise SettingsError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    state_dir = merged.get("state_dir")
    return AgentSettings(
        config_path=config_path,
        state_dir=Path(state_dir) if state_dir else default_state_dir(env),
        server=merged.get("server") or None,
        enrollment_key=(merged.get("enrollment_key") or "").strip() or None,
        gateway_url=merged.get("gateway_url") or None,
        log_level=log_level,
        enrollment_key_source=sources.get("enrollment_key", "default"),
    )


def remove_enrollment_key(path: Path) -> bool:
    """Delete the top-level ``enrollment_key`` line from the TOML file at ``path``.

    The rest of the file (comments included) is kept byte for byte; the result
    is parsed again before it replaces the file, which keeps its mode.
    Returns True when a key was removed.
    """
    text = path.read_text()
    if "enrollment_key" not in tomllib.loads(text):
        return False
    kept: list[str] = []
    in_table = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            in_table = True
        key = stripped.split("=", 1)[0].strip().strip("\"'")
        if not in_table and "=" in stripped and key == "enrollment_key":
            continue
        kept.append(line)
    result = "".join(kept)
    try:
        still_there = "enrollment_key" in tomllib.loads(result)
    except tomllib.TOMLDecodeError:
        still_there = True
    if still_there:
        raise SettingsError(f"cannot remove enrollment_key from {path}: unexpected layout")
    mode = path.stat().st_mode & 0o777
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, result.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True

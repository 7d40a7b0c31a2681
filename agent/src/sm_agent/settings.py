"""The agent's settings: a TOML file, then ``SM_AGENT_*`` variables, then flags.

Each later source overrides the earlier ones, key by key. The file is
optional at its default location and required when named explicitly::

    # /etc/sm-agent/agent.toml
    server = "https://core.example.net:8101"   # the core, for enrollment
    enrollment_key = "sme1.…"                  # removed after enrolling
    state_dir = "/var/lib/sm-agent"
    # Gateways to try in turn (default: the one the core named at enrollment).
    gateway_urls = ["wss://core-a.example.net:8104/agent/ws", "wss://core-b.example.net:8104/agent/ws"]
    buffer_max_entries = 20000                 # offline buffer: heartbeats kept at most
    buffer_max_bytes = 16777216                # … and bytes (oldest dropped first)
    log_level = "INFO"

    # Remote control (off unless enabled here; the server cannot change this).
    allow_shell = false                        # run shell commands
    allow_service = false                      # systemctl list/status/start/stop/…
    allow_logs = false                         # journald units and files under log_roots
    shell_user = "deploy"                      # run shell as this user (needs root)
    allowed_users = ["deploy", "www-data"]     # users an order may name
    service_units = ["nginx.service", "app-*"] # units service control may touch (globs)
    log_roots = ["/var/log"]                   # files logs may read (after resolving links)
    max_output_bytes = 1048576                 # output kept and sent per stream
    max_executions = 8                         # executions running at once
    kill_grace = 5.0                           # seconds between SIGTERM and SIGKILL

Environment: ``SM_AGENT_CONFIG`` (the file), then ``SM_AGENT_<KEY>`` for each
key above (lists comma-separated: ``SM_AGENT_GATEWAY_URLS``,
``SM_AGENT_ALLOWED_USERS``, ``SM_AGENT_SERVICE_UNITS``, ``SM_AGENT_LOG_ROOTS``;
booleans ``true``/``false``/``1``/``0``/``yes``/``no``). Values are checked
here, with a message naming the key and where it came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ENV_PREFIX = "SM_AGENT_"
KEYS = (
    "server",
    "enrollment_key",
    "state_dir",
    "gateway_urls",
    "buffer_max_entries",
    "buffer_max_bytes",
    "log_level",
    "allow_shell",
    "allow_service",
    "allow_logs",
    "shell_user",
    "allowed_users",
    "service_units",
    "log_roots",
    "max_output_bytes",
    "max_executions",
    "kill_grace",
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_BUFFER_ENTRIES = 20_000
DEFAULT_BUFFER_BYTES = 16 * 1024 * 1024
MIN_BUFFER_BYTES = 64 * 1024
MAX_GATEWAY_URLS = 16
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
MIN_OUTPUT_BYTES = 1024
DEFAULT_MAX_EXECUTIONS = 8
DEFAULT_KILL_GRACE = 5.0
DEFAULT_LOG_ROOTS = ("/var/log",)
DEFAULT_SERVICE_UNITS = ("*",)
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_UNIT_GLOB = re.compile(r"^[A-Za-z0-9@._:\\*?\[\]!-]{1,256}$")

Source = Literal["default", "file", "env", "flag"]
Value = str | bool | int | float | tuple[str, ...]


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
    # Empty: the gateway named at enrollment.
    gateway_urls: tuple[str, ...]
    buffer_max_entries: int
    buffer_max_bytes: int
    log_level: str
    # Where the enrollment key came from: only a key read from the file is
    # removed from it after enrolling.
    enrollment_key_source: Source
    # Remote control: what this node lets the core run (sm_agent.orders).
    allow_shell: bool = False
    allow_service: bool = False
    allow_logs: bool = False
    # None: the agent's own user.
    shell_user: str | None = None
    allowed_users: tuple[str, ...] = ()
    service_units: tuple[str, ...] = DEFAULT_SERVICE_UNITS
    log_roots: tuple[str, ...] = DEFAULT_LOG_ROOTS
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    max_executions: int = DEFAULT_MAX_EXECUTIONS
    kill_grace: float = DEFAULT_KILL_GRACE


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise SettingsError(f"{key} must be a string")
    return value


def _count(minimum: int) -> Callable[[str, object], int]:
    def parse(key: str, value: object) -> int:
        if isinstance(value, str):
            try:
                value = int(value.strip().replace("_", ""))
            except ValueError:
                raise SettingsError(f"{key} must be a whole number, not {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{key} must be a whole number")
        if value < minimum:
            raise SettingsError(f"{key} must be at least {minimum}")
        return value

    return parse


def _urls(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):  # the environment: comma-separated
        value = [part for part in (p.strip() for p in value.split(",")) if part]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SettingsError(f"{key} must be a list of wss:// URLs")
    urls = tuple(str(v).strip() for v in value)
    for url in urls:
        if not url.startswith("wss://") or len(url) <= len("wss://"):
            raise SettingsError(f"{key}: {url!r} is not a wss:// URL")
    if len(urls) > MAX_GATEWAY_URLS:
        raise SettingsError(f"{key}: at most {MAX_GATEWAY_URLS} URLs")
    return urls


def _level(key: str, value: object) -> str:
    level = _string(key, value).upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"{key} must be one of {', '.join(LOG_LEVELS)}")
    return level


def _flag(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1", "yes", "on"):
            return True
        if word in ("false", "0", "no", "off"):
            return False
    raise SettingsError(f"{key} must be true or false, not {value!r}")


def _seconds(minimum: float, maximum: float) -> Callable[[str, object], float]:
    def parse(key: str, value: object) -> float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise SettingsError(f"{key} must be a number of seconds, not {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{key} must be a number of seconds")
        if not minimum <= value <= maximum:
            raise SettingsError(f"{key} must be between {minimum:g} and {maximum:g} seconds")
        return float(value)

    return parse


def _names(
    what: str, check: Callable[[str], str | None]
) -> Callable[[str, object], tuple[str, ...]]:
    """A list of strings (comma-separated in the environment), each checked by ``check``."""

    def parse(key: str, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [part for part in (p.strip() for p in value.split(",")) if part]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{key} must be a list of {what}")
        names = tuple(str(v).strip() for v in value)
        for name in names:
            problem = check(name)
            if problem:
                raise SettingsError(f"{key}: {name!r} {problem}")
        return names

    return parse


def _user_problem(name: str) -> str | None:
    return None if _USER_NAME.match(name) else "is not a user name (a-z, 0-9, _ and -)"


def _unit_problem(name: str) -> str | None:
    return None if _UNIT_GLOB.match(name) else "is not a unit name or glob"


def _root_problem(name: str) -> str | None:
    if not name.startswith("/"):
        return "is not an absolute path"
    if os.path.realpath(name) == "/":
        return "would allow every file of the machine; name narrower directories"
    return None


def _user(key: str, value: object) -> str:
    name = _string(key, value).strip()
    problem = _user_problem(name)
    if problem:
        raise SettingsError(f"{key}: {name!r} {problem}")
    return name


PARSERS: dict[str, Callable[[str, object], Value]] = {
    "server": _string,
    "enrollment_key": _string,
    "state_dir": _string,
    "gateway_urls": _urls,
    "buffer_max_entries": _count(1),
    "buffer_max_bytes": _count(MIN_BUFFER_BYTES),
    "log_level": _level,
    "allow_shell": _flag,
    "allow_service": _flag,
    "allow_logs": _flag,
    "shell_user": _user,
    "allowed_users": _names("user names", _user_problem),
    "service_units": _names("unit names or globs", _unit_problem),
    "log_roots": _names("absolute directories", _root_problem),
    "max_output_bytes": _count(MIN_OUTPUT_BYTES),
    "max_executions": _count(1),
    "kill_grace": _seconds(0.0, 300.0),
}


def _parse_layer(where: str, layer: Mapping[str, object]) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for key, value in layer.items():
        if key not in PARSERS:
            raise SettingsError(f"{where}: unknown setting {key!r} (known: {', '.join(KEYS)})")
        try:
            values[key] = PARSERS[key](key, value)
        except SettingsError as exc:
            raise SettingsError(f"{where}: {exc}") from None
    return values


def _read_file(path: Path, explicit: bool) -> dict[str, object]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise SettingsError(f"configuration file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from exc


def load_settings(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> AgentSettings:
    """Settings from the file, the environment and ``flags`` (keys of ``KEYS`` + ``config``).

    A flag whose value is None (or an empty list) was not given.
    """
    given = {k: v for k, v in (flags or {}).items() if v is not None and v != []}
    env = os.environ if env is None else env

    explicit_config = given.get("config") or env.get(ENV_PREFIX + "CONFIG")
    config_path = Path(str(explicit_config)) if explicit_config else default_config_path(env)
    merged: dict[str, Value] = {}
    sources: dict[str, Source] = {}
    layers: list[tuple[Source, dict[str, Value]]] = [
        ("file", _parse_layer(str(config_path), _read_file(config_path, bool(explicit_config)))),
        (
            "env",
            _parse_layer(
                "environment",
                {k: env[ENV_PREFIX + k.upper()] for k in KEYS if ENV_PREFIX + k.upper() in env},
            ),
        ),
        ("flag", _parse_layer("command line", {k: v for k, v in given.items() if k in KEYS})),
    ]
    for source, layer in layers:
        for key, value in layer.items():
            merged[key] = value
            sources[key] = source

    def text(key: str) -> str | None:
        value = merged.get(key)
        return value.strip() or None if isinstance(value, str) else None

    def number(key: str, default: int) -> int:
        value = merged.get(key, default)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    def flag(key: str) -> bool:
        return merged.get(key) is True

    def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = merged.get(key, default)
        return value if isinstance(value, tuple) else default

    grace = merged.get("kill_grace", DEFAULT_KILL_GRACE)

    urls = merged.get("gateway_urls", ())
    state_dir = text("state_dir")
    return AgentSettings(
        config_path=config_path,
        state_dir=Path(state_dir) if state_dir else default_state_dir(env),
        server=text("server"),
        enrollment_key=text("enrollment_key"),
        gateway_urls=urls if isinstance(urls, tuple) else (),
        buffer_max_entries=number("buffer_max_entries", DEFAULT_BUFFER_ENTRIES),
        buffer_max_bytes=number("buffer_max_bytes", DEFAULT_BUFFER_BYTES),
        log_level=str(merged.get("log_level", "INFO")),
        enrollment_key_source=sources.get("enrollment_key", "default"),
        allow_shell=flag("allow_shell"),
        allow_service=flag("allow_service"),
        allow_logs=flag("allow_logs"),
        shell_user=text("shell_user"),
        allowed_users=names("allowed_users", ()),
        service_units=names("service_units", DEFAULT_SERVICE_UNITS),
        log_roots=names("log_roots", DEFAULT_LOG_ROOTS),
        max_output_bytes=number("max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES),
        max_executions=number("max_executions", DEFAULT_MAX_EXECUTIONS),
        kill_grace=float(grace) if isinstance(grace, int | float) else DEFAULT_KILL_GRACE,
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

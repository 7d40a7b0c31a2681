"""Configuration: file < SM_AGENT_ environment < flags; the key leaves the file after enrolling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sm_agent.settings import SettingsError, load_settings, remove_enrollment_key

CONFIG = """\
# the core
server = "https://from-file:8101"
enrollment_key = "sme1.file"  # removed after enrolling
state_dir = "/from/file"
log_level = "debug"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG)
    return path


def test_file_values(config: Path) -> None:
    settings = load_settings({"config": str(config)}, env={})
    assert settings.config_path == config
    assert settings.server == "https://from-file:8101"
    assert settings.enrollment_key == "sme1.file"
    assert settings.enrollment_key_source == "file"
    assert settings.state_dir == Path("/from/file")
    assert settings.log_level == "DEBUG"
    assert settings.gateway_urls == ()
    assert settings.buffer_max_entries == 20_000
    assert settings.buffer_max_bytes == 16 * 1024 * 1024


def test_environment_overrides_file_and_flags_override_both(config: Path) -> None:
    env = {
        "SM_AGENT_CONFIG": str(config),
        "SM_AGENT_SERVER": "https://from-env:8101",
        "SM_AGENT_ENROLLMENT_KEY": "sme1.env",
        "SM_AGENT_STATE_DIR": "/from/env",
    }
    settings = load_settings({"state_dir": "/from/flag", "server": None}, env=env)
    assert settings.config_path == config
    assert settings.server == "https://from-env:8101"  # a flag given as None does not count
    assert settings.enrollment_key == "sme1.env"
    assert settings.enrollment_key_source == "env"
    assert settings.state_dir == Path("/from/flag")

    flagged = load_settings({"enrollment_key": "sme1.flag"}, env=env)
    assert flagged.enrollment_key == "sme1.flag"
    assert flagged.enrollment_key_source == "flag"


def test_config_flag_beats_config_variable(config: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('server = "https://other"\n')
    settings = load_settings({"config": str(other)}, env={"SM_AGENT_CONFIG": str(config)})
    assert settings.server == "https://other"


def test_defaults_without_any_file(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_STATE_HOME": str(tmp_path / "st")}
    settings = load_settings({}, env=env)
    if os.geteuid() == 0:
        assert settings.config_path == Path("/etc/sm-agent/agent.toml")
        assert settings.state_dir == Path("/var/lib/sm-agent")
    else:
        assert settings.config_path == tmp_path / "cfg" / "sm-agent" / "agent.toml"
        assert settings.state_dir == tmp_path / "st" / "sm-agent"
    assert settings.server is None
    assert settings.enrollment_key is None
    assert settings.enrollment_key_source == "default"
    assert settings.log_level == "INFO"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('sever = "typo"\n', "unknown setting 'sever'"),
        ("server = 8101\n", "server must be a string"),
        ("server = \n", "not valid TOML"),
        ('log_level = "loud"\n', "log_level must be one of"),
        ("buffer_max_entries = 0\n", "buffer_max_entries must be at least 1"),
        ('buffer_max_entries = "many"\n', "must be a whole number, not 'many'"),
        ("buffer_max_entries = 1.5\n", "buffer_max_entries must be a whole number"),
        ("buffer_max_entries = true\n", "buffer_max_entries must be a whole number"),
        ("buffer_max_bytes = 1024\n", "buffer_max_bytes must be at least 65536"),
        ('gateway_urls = ["https://a/agent/ws"]\n', "is not a wss:// URL"),
        ("gateway_urls = [1]\n", "gateway_urls must be a list of wss:// URLs"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings({"config": str(path)}, env={})


def test_an_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({"config": str(tmp_path / "missing.toml")}, env={})


def test_remove_enrollment_key_keeps_everything_else(config: Path) -> None:
    config.chmod(0o640)
    assert remove_enrollment_key(config) is True
    text = config.read_text()
    assert "enrollment_key" not in text
    assert text == CONFIG.replace('enrollment_key = "sme1.file"  # removed after enrolling\n', "")
    assert config.stat().st_mode & 0o777 == 0o640
    assert load_settings({"config": str(config)}, env={}).enrollment_key is None
    assert remove_enrollment_key(config) is False


def test_remove_enrollment_key_leaves_tables_alone(tmp_path: Path) -> None:
    # A future table may hold a key of the same name; only the top-level one goes.
    path = tmp_path / "agent.toml"
    path.write_text('enrollment_key = "sme1.x"\n[other]\nenrollment_key = "keep"\n')
    assert remove_enrollment_key(path) is True
    assert path.read_text() == '[other]\nenrollment_key = "keep"\n'


def test_remove_enrollment_key_refuses_layouts_it_cannot_edit(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    original = 'enrollment_key = """\nsme1.x\n"""\n'
    path.write_text(original)
    with pytest.raises(SettingsError, match="unexpected layout"):
        remove_enrollment_key(path)
    assert path.read_text() == original


def test_typed_keys_from_file_environment_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        'gateway_urls = ["wss://a:8104/agent/ws", "wss://b:8104/agent/ws"]\n'
        "buffer_max_entries = 500\nbuffer_max_bytes = 1_048_576\n"
    )
    from_file = load_settings({"config": str(path)}, env={})
    assert from_file.gateway_urls == ("wss://a:8104/agent/ws", "wss://b:8104/agent/ws")
    assert (from_file.buffer_max_entries, from_file.buffer_max_bytes) == (500, 1_048_576)

    env = {
        "SM_AGENT_CONFIG": str(path),
        "SM_AGENT_GATEWAY_URLS": " wss://c/agent/ws , wss://d/agent/ws,",
        "SM_AGENT_BUFFER_MAX_ENTRIES": "900",
    }
    from_env = load_settings({}, env=env)
    assert from_env.gateway_urls == ("wss://c/agent/ws", "wss://d/agent/ws")
    assert (from_env.buffer_max_entries, from_env.buffer_max_bytes) == (900, 1_048_576)

    flagged = load_settings(
        {"gateway_urls": ["wss://e/agent/ws"], "buffer_max_bytes": "70000"}, env=env
    )
    assert flagged.gateway_urls == ("wss://e/agent/ws",)
    assert flagged.buffer_max_bytes == 70_000
    # One URL may be written as a plain string too.
    path.write_text('gateway_urls = "wss://a:8104/agent/ws"\n')
    assert load_settings({"config": str(path)}, env={}).gateway_urls == ("wss://a:8104/agent/ws",)
    # An empty list of flags means none were given.
    assert load_settings({"gateway_urls": []}, env=env).gateway_urls == from_env.gateway_urls


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SM_AGENT_BUFFER_MAX_BYTES": "16M"},
            "environment: buffer_max_bytes must be a whole number",
        ),
        (
            {"SM_AGENT_GATEWAY_URLS": "ws://plain/agent/ws"},
            "environment: gateway_urls: 'ws://plain",
        ),
        ({"SM_AGENT_LOG_LEVEL": "chatty"}, "environment: log_level must be one of"),
    ],
)
def test_bad_environment_values_say_where_they_came_from(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({}, env={"XDG_CONFIG_HOME": "/nonexistent", **env})


def test_remote_control_settings_default_off(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    settings = load_settings({"config": str(empty)}, env={})
    assert (settings.allow_shell, settings.allow_service, settings.allow_logs) == (False,) * 3
    assert settings.shell_user is None
    assert settings.allowed_users == ()
    assert settings.service_units == ("*",)
    assert settings.log_roots == ("/var/log",)
    assert settings.max_output_bytes == 1024 * 1024
    assert settings.max_executions == 8
    assert settings.kill_grace == 5.0


def test_remote_control_settings_from_file_env_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'allow_shell = true\nshell_user = "deploy"\nallowed_users = ["deploy", "www-data"]\n'
        'service_units = ["nginx.service", "app-*"]\nlog_roots = ["/var/log", "/srv/logs"]\n'
        "max_output_bytes = 65536\nmax_executions = 2\nkill_grace = 1.5\n"
    )
    env = {"SM_AGENT_ALLOW_LOGS": "yes", "SM_AGENT_LOG_ROOTS": "/opt/app/log, /var/log"}
    settings = load_settings({"config": str(config), "allow_service": True}, env=env)
    assert (settings.allow_shell, settings.allow_service, settings.allow_logs) == (True,) * 3
    assert settings.shell_user == "deploy"
    assert settings.allowed_users == ("deploy", "www-data")
    assert settings.service_units == ("nginx.service", "app-*")
    assert settings.log_roots == ("/opt/app/log", "/var/log")
    assert (settings.max_output_bytes, settings.max_executions) == (65536, 2)
    assert settings.kill_grace == 1.5
    # A flag turns it off again.
    assert not load_settings({"config": str(config), "allow_shell": False}, env={}).allow_shell


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('allow_shell = "maybe"', "allow_shell must be true or false"),
        ('shell_user = "Root!"', "shell_user: 'Root!' is not a user name"),
        ("allowed_users = [1]", "allowed_users must be a list of user names"),
        ('log_roots = ["var/log"]', "is not an absolute path"),
        ('log_roots = ["/"]', "would allow every file"),
        ('service_units = ["a b"]', "is not a unit name or glob"),
        ("max_output_bytes = 10", "max_output_bytes must be at least 1024"),
        ("max_executions = 0", "max_executions must be at least 1"),
        ("kill_grace = -1", "kill_grace must be between 0 and 300 seconds"),
    ],
)
def test_remote_control_settings_are_checked(tmp_path: Path, line: str, message: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(line + "\n")
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")) as caught:
        load_settings({"config": str(config)}, env={})
    assert str(config) in str(caught.value)

"""deploy/install-agent.sh: the remote-control flags, config lines and the polkit rule.

A stand-in Python (a shell script) makes the virtual environment, so the
installer runs in a moment; the real pip install is tested in tests/test_deploy.py.
"""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from sm_agent.policy import UNIT_SUFFIXES, unit_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
INSTALLER = DEPLOY / "install-agent.sh"

STAND_IN_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"
    printf '#!/bin/sh\\nexit 0\\n' >"$3/bin/pip"
    printf '#!/bin/sh\\necho sm-agent 0.1.0\\n' >"$3/bin/sm-agent"
    chmod +x "$3/bin/pip" "$3/bin/sm-agent"
fi
exit 0
"""


def install(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    python = tmp_path / "python3"
    python.write_text(STAND_IN_PYTHON)
    python.chmod(0o755)
    return subprocess.run(
        [
            "sh",
            str(INSTALLER),
            "--server",
            "https://core:8101",
            "--key",
            "sme1.abc.def",
            "--no-systemd",
            "--prefix",
            str(tmp_path / "root"),
            "--python",
            str(python),
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_shellcheck_is_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (sm test installs it)")
    result = subprocess.run(
        [shellcheck, str(INSTALLER)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_remote_control_is_off_by_default(tmp_path: Path) -> None:
    result = install(tmp_path)
    assert result.returncode == 0, result.stderr
    config = tomllib.loads((tmp_path / "root/etc/sm-agent/agent.toml").read_text())
    assert (config["allow_shell"], config["allow_service"], config["allow_logs"]) == (False,) * 3
    assert not (tmp_path / "root/etc/polkit-1").exists()


def test_allow_flags_write_the_settings_and_the_polkit_rule(tmp_path: Path) -> None:
    result = install(
        tmp_path, "--allow-shell", "--allow-logs", "--allow-service", "nginx,app-worker@1.service"
    )
    assert result.returncode == 0, result.stderr
    config = tomllib.loads((tmp_path / "root/etc/sm-agent/agent.toml").read_text())
    assert config["allow_shell"] is True
    assert config["allow_logs"] is True
    assert config["log_roots"] == ["/var/log"]
    assert config["allow_service"] is True
    assert config["service_units"] == ["nginx.service", "app-worker@1.service"]
    rule = (tmp_path / "root/etc/polkit-1/rules.d/50-sm-agent.rules").read_text()
    assert 'var units = ["nginx.service", "app-worker@1.service"];' in rule
    assert '"org.freedesktop.systemd1.manage-units"' in rule
    assert "@UNITS@" not in rule
    node = shutil.which("node")
    if node:  # the rule is valid JavaScript
        check = subprocess.run([node, "--check", "-"], input=rule, text=True, check=False)
        assert check.returncode == 0


@pytest.mark.parametrize("units", ["", "nginx;rm", "app-*", '"x"'])
def test_bad_units_are_refused(tmp_path: Path, units: str) -> None:
    result = install(tmp_path, "--allow-service", units)
    assert result.returncode != 0
    assert "--allow-service" in result.stderr


def test_units_are_named_as_the_agent_names_them(tmp_path: Path) -> None:
    # The installer's service_units and polkit rule must match what policy.plan checks.
    units = ["web", *(f"u{suffix}" for suffix in UNIT_SUFFIXES)]
    result = install(tmp_path, "--allow-service", ",".join(units))
    assert result.returncode == 0, result.stderr
    config = tomllib.loads((tmp_path / "root/etc/sm-agent/agent.toml").read_text())
    assert config["service_units"] == [unit_name(unit) for unit in units]

"""Enrollment against the real registry, and the ``sm-agent`` command line around it."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from sm_agent.__main__ import main
from sm_agent.enrollment import EnrollmentError, enroll
from sm_agent.facts import machine_id
from sm_agent.state import StateDir
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.scopes import ALL_SCOPES
from sm_shared.tokens import issue_access_token


def _admin(data_dir: DataDir, origin: str) -> httpx.Client:
    token = issue_access_token(
        data_dir, subject="admin", client_id="sm-admin", scopes=ALL_SCOPES, ttl=300
    )
    return httpx.Client(
        base_url=origin,
        verify=ssl.create_default_context(cafile=str(data_dir.ca_cert)),
        headers={"Authorization": f"Bearer {token}"},
        trust_env=False,
    )


def _node(data_dir: DataDir, origin: str, node_id: str) -> dict[str, Any]:
    with _admin(data_dir, origin) as admin:
        response = admin.get(f"/api/v1/nodes/{node_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def key(data_dir: DataDir) -> str:
    return str(load_key(data_dir, KeyKind.ENROLLMENT))


def test_enroll_stores_what_the_core_returns(
    registry_origin: str, data_dir: DataDir, key: str, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state")
    identity = enroll(registry_origin, key, state)

    assert state.enrolled()
    assert state.credential().startswith(f"smn1.{identity.node_id}.")
    assert state.identity() == identity
    assert identity.gateway_url == "wss://127.0.0.1:8104/agent/ws"
    assert identity.heartbeat_interval == 5
    assert identity.server == registry_origin
    assert state.root.stat().st_mode & 0o777 == 0o700
    for path in (state.credential_file, state.ca_file, state.node_file):
        assert path.stat().st_mode & 0o777 == 0o600
    node = _node(data_dir, registry_origin, identity.node_id)
    assert node["machine_id"] == machine_id()
    assert node["facts"]["agent_version"] == "0.1.0"


def test_enrolling_again_keeps_the_node_and_rotates_its_credential(
    registry_origin: str, data_dir: DataDir, key: str, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state")
    first = enroll(registry_origin, key, state)
    old_credential = state.credential()
    second = enroll(registry_origin, key, state)
    assert second.node_id == first.node_id
    assert state.credential() != old_credential
    with _admin(data_dir, registry_origin) as admin:
        assert admin.get("/api/v1/nodes").json()["total"] == 1


def test_an_enrollment_token_enrolls_into_its_group(
    registry_origin: str, data_dir: DataDir, tmp_path: Path
) -> None:
    with _admin(data_dir, registry_origin) as admin:
        assert admin.post("/api/v1/groups", json={"name": "web"}).status_code == 201
        created = admin.post(
            "/api/v1/enrollment-tokens", json={"ttl": 600, "max_uses": 1, "group": "web"}
        )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("smt1.")

    identity = enroll(registry_origin, token, StateDir(tmp_path / "a"))
    assert _node(data_dir, registry_origin, identity.node_id)["group"] == "web"
    with pytest.raises(EnrollmentError) as caught:
        enroll(registry_origin, token, StateDir(tmp_path / "b"))
    assert caught.value.status == 401
    assert "exhausted" in str(caught.value)


def test_a_wrong_secret_is_refused_by_the_core(
    registry_origin: str, key: str, tmp_path: Path
) -> None:
    state = StateDir(tmp_path / "state")
    wrong = key[:-6] + "AAAAAA"
    with pytest.raises(EnrollmentError) as caught:
        enroll(registry_origin, wrong, state)
    assert caught.value.status == 401
    assert "refused" in str(caught.value)
    assert not state.enrolled()


def test_cli_enroll_removes_the_key_from_the_config_file(
    registry_origin: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'server = "{registry_origin}"\nenrollment_key = "{key}"\n')
    state = tmp_path / "state"
    assert main(["enroll", "--config", str(config), "--state-dir", str(state)]) == 0
    assert "enrolled: node" in capsys.readouterr().out
    assert config.read_text() == f'server = "{registry_origin}"\n'
    assert StateDir(state).enrolled()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "not enrolled"),
        (["enroll", "--server", "https://127.0.0.1:9"], "no enrollment key"),
        (["enroll", "--key", "sme1.x.y"], "no core URL"),
        (["enroll", "--server", "https://127.0.0.1:9", "--key", "sms1.a.b"], "enrollment failed"),
        (["run", "--log-level", "chatty"], "log_level"),
    ],
)
def test_cli_errors(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("")
    status = main([*argv, "--config", str(config), "--state-dir", str(tmp_path / "state")])
    assert status == 1
    assert message in capsys.readouterr().err


def test_cli_run_refuses_a_plain_gateway_url(
    registry_origin: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    enroll(registry_origin, key, StateDir(state))
    config = tmp_path / "agent.toml"
    config.write_text('gateway_urls = ["ws://127.0.0.1:8104/agent/ws"]\n')
    assert main(["run", "--config", str(config), "--state-dir", str(state)]) == 1
    assert "is not a wss:// URL" in capsys.readouterr().err

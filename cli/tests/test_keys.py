"""``smctl keys show|rotate``: rotation replaces what new parties use, never what nodes hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from sm_ctl import main
from sm_ctl.keyring import Keys
from sm_ctl.main import app
from sm_registry import RegistrySettings, create_app
from sm_shared.access_keys import AccessKey, KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.pki import ca_fingerprint
from sm_shared.token_keys import public_jwks
from sm_shared.tokens import issue_access_token

runner = CliRunner()

FACTS = {
    "hostname": "web-1",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-18-amd64",
    "arch": "x86_64",
    "cpu_model": "Test CPU",
    "cpu_count": 2,
    "memory_total": 1 << 30,
    "addresses": [],
    "agent_version": "0.1.0",
    "boot_id": "2f0c1e1a-6f59-4f5e-9a43-3d8a4a1f7c22",
}


def _smctl(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _value(output: str, label: str) -> str:
    for line in output.splitlines():
        if line.startswith(label + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{label} not in {output!r}")


def test_show_prints_both_keys_and_the_fingerprint(data_dir: DataDir) -> None:
    output = _smctl("keys", "show", "--data-dir", str(data_dir.root))
    enrollment = AccessKey.parse(_value(output, "Enrollment key (for nodes)"), KeyKind.ENROLLMENT)
    secret = AccessKey.parse(_value(output, "Secret key (for the client)"), KeyKind.SECRET)
    assert enrollment == load_key(data_dir, KeyKind.ENROLLMENT)
    assert secret == load_key(data_dir, KeyKind.SECRET)
    fingerprint = ca_fingerprint(data_dir.ca_cert.read_bytes())
    assert _value(output, "CA fingerprint (SHA-256)") == ":".join(f"{b:02X}" for b in fingerprint)
    assert enrollment.fingerprint == secret.fingerprint == fingerprint


def test_show_on_an_empty_directory_says_what_to_do(tmp_path: Any) -> None:
    result = runner.invoke(app, ["keys", "show", "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "run `smctl init`" in result.output


def test_rotate_one_key_leaves_the_others(data_dir: DataDir) -> None:
    secret = data_dir.secret_key.read_bytes()
    signing = public_jwks(data_dir)
    output = _smctl("keys", "rotate", "enrollment", "--data-dir", str(data_dir.root))
    new = AccessKey.parse(_value(output, "New enrollment key (for nodes)"), KeyKind.ENROLLMENT)
    assert new == load_key(data_dir, KeyKind.ENROLLMENT)
    assert data_dir.secret_key.read_bytes() == secret
    assert public_jwks(data_dir) == signing
    assert "New secret key" not in output


@pytest.fixture
def registry(data_dir: DataDir, redis_url: str) -> Iterator[Any]:
    settings = RegistrySettings(
        data_dir=data_dir.root, redis_url=redis_url, validate_responses=True
    )
    # The token endpoint issues tokens over HTTPS only.
    with create_app(settings).test_client(base_url="https://testserver") as client:
        yield client


def _enroll(client: Any, **body: Any) -> Any:
    return client.post("/api/v1/enroll", json={"machine_id": "machine-1", "facts": FACTS, **body})


def _admin_token(client: Any, secret: str) -> Any:
    return client.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "sm-admin", "client_secret": secret},
    )


def test_rotation_keeps_enrolled_nodes_working(registry: Any, data_dir: DataDir) -> None:
    old_enrollment = data_dir.enrollment_key.read_text().strip()
    old_secret = data_dir.secret_key.read_text().strip()
    enrolled = _enroll(registry, key=old_enrollment)
    assert enrolled.status_code == 201, enrolled.text
    node_id, credential = enrolled.json()["node_id"], enrolled.json()["credential"]
    token_before = _admin_token(registry, old_secret).json()["access_token"]

    output = _smctl("keys", "rotate", "all", "--data-dir", str(data_dir.root))
    new_enrollment = _value(output, "New enrollment key (for nodes)")
    new_secret = _value(output, "New secret key (for the client)")
    assert "New token signing key" in output
    assert new_enrollment != old_enrollment
    assert new_secret != old_secret

    # The node authenticates with its own credential, as before.
    service = issue_access_token(
        data_dir, subject="sm-services", client_id="sm-services", scopes=["service"], ttl=60
    )
    authenticated = registry.post(
        "/api/v1/nodes/authenticate",
        json={"credential": credential},
        headers={"Authorization": f"Bearer {service}"},
    )
    assert authenticated.status_code == 200, authenticated.text
    assert authenticated.json()["node_id"] == node_id
    # ... and can re-enroll with it (no key needed).
    again = _enroll(registry, credential=credential)
    assert again.status_code == 201, again.text
    assert again.json()["node_id"] == node_id

    # The old keys are refused; the new ones work.
    assert _enroll(registry, key=old_enrollment).status_code == 401
    assert _enroll(registry, key=new_enrollment, machine_id="machine-2").status_code == 201
    refused = _admin_token(registry, old_secret)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    token_after = _admin_token(registry, new_secret)
    assert token_after.status_code == 200

    # A token signed before the signing key rotated stays valid until it expires.
    for token in (token_before, token_after.json()["access_token"]):
        nodes = registry.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
        assert nodes.status_code == 200
        assert nodes.json()["total"] == 2


def test_every_fingerprint_prints_as_hex() -> None:
    """Colon-separated hex pairs look like emoji codes (':cd:') to rich; none may be replaced."""
    fingerprint = bytes(range(0xC0, 0xE0))  # CD, DA, ... and many more pairs
    keys = Keys(
        AccessKey.generate(KeyKind.ENROLLMENT, fingerprint),
        AccessKey.generate(KeyKind.SECRET, fingerprint),
        fingerprint,
    )
    with main.out.capture() as captured:
        main._print_keys(keys)
    assert _value(captured.get(), "CA fingerprint (SHA-256)") == keys.fingerprint_hex
    assert keys.fingerprint_hex.startswith("C0:C1:C2")

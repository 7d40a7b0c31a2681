"""Backup of a running core, restore into an empty directory: the same nodes and keys.

``smctl backup`` runs while ``up`` serves (an online backup); the restored
directory, started with ``up`` on other ports, answers the same secret key
with the same nodes (ids, names, labels, groups) and prints the same keys.
"""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from sm_ctl.instance import UpProcess, free_port_pair
from sm_shared.datadir import DataDir

pytestmark = pytest.mark.slow

FACTS = {
    "hostname": "db-1",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-18-amd64",
    "arch": "x86_64",
    "cpu_model": "Test CPU",
    "cpu_count": 4,
    "memory_total": 8 << 30,
    "addresses": [{"interface": "eth0", "family": "ipv4", "address": "10.0.0.12"}],
    "agent_version": "0.1.0",
    "boot_id": "0c5a8e7e-2b2f-4a3e-9f59-6a1b2c3d4e5f",
}
# What a restore must keep (status and last_seen come from Redis, which is not backed up).
KEPT = ("id", "name", "hostname", "machine_id", "group", "labels", "facts", "enrolled_at")


def smctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sm_ctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("SM_")},
    )


def api(url: str, data: DataDir) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(data.ca_cert))
    return httpx.Client(base_url=url, verify=verify, trust_env=False)


def login(client: httpx.Client, secret: str) -> None:
    answer = client.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "sm-admin", "client_secret": secret},
    )
    assert answer.status_code == 200, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"


def nodes(client: httpx.Client) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/nodes", params={"sort": "created"})
    assert answer.status_code == 200, answer.text
    return [{k: node[k] for k in KEPT} for node in answer.json()["items"]]


@pytest.mark.timeout(180)
def test_backup_then_restore_gives_the_same_nodes_and_keys(tmp_path: Path) -> None:
    original = UpProcess.start(tmp_path / "original", free_port_pair())
    try:
        before = original.wait_ready()
        with api(before.api_url, original.data) as client:
            login(client, before.secret_key)
            enrolled = client.post(
                "/api/v1/enroll",
                json={"key": before.enrollment_key, "machine_id": "db-1-machine", "facts": FACTS},
            )
            assert enrolled.status_code == 201, enrolled.text
            node_id = enrolled.json()["node_id"]
            assert client.post("/api/v1/groups", json={"name": "databases"}).status_code == 201
            changed = client.patch(
                f"/api/v1/nodes/{node_id}",
                json={"name": "primary-db", "labels": {"env": "prod"}, "group": "databases"},
            )
            assert changed.status_code == 200, changed.text
            expected = nodes(client)
        assert len(expected) == 2  # the local agent's node and db-1

        archive = tmp_path / "backup.tar.gz"
        made = smctl("backup", "--data-dir", str(original.data.root), "--output", str(archive))
        assert made.returncode == 0, made.stderr
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    finally:
        assert original.stop() == 0

    target = tmp_path / "restored"
    restored = smctl("restore", str(archive), "--data-dir", str(target))
    assert restored.returncode == 0, restored.stderr
    again = smctl("restore", str(archive), "--data-dir", str(target))
    assert again.returncode == 1
    assert "is not empty; restore into an empty directory or pass --force" in again.stderr

    copy = UpProcess.start(target, free_port_pair())
    try:
        after = copy.wait_ready()
        assert (after.enrollment_key, after.secret_key, after.fingerprint) == (
            before.enrollment_key,
            before.secret_key,
            before.fingerprint,
        )
        # The restored local agent came back as the same node, not a second one.
        assert after.fields["Local agent"] == before.fields["Local agent"].replace(
            str(original.data.root), str(target)
        )
        with api(after.api_url, copy.data) as client:
            login(client, before.secret_key)  # the secret key of the original works
            assert nodes(client) == expected
    finally:
        assert copy.stop() == 0

"""The operator's first day, against ``smctl up``: the secret key runs the fleet.

A real ``up`` (private redis-server, its local agent enrolled and online), and
one HTTPS client that trusts only the core's CA. The secret key is exchanged
for an admin token that lists, labels, groups and deletes nodes; a viewer
signed in with a password may read but gets 403 on every write; the
enrollment key obtains no token at all.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sm_ctl.instance import UpProcess, free_port_pair
from sm_shared.datadir import DataDir

pytestmark = pytest.mark.slow


@pytest.fixture
def core(tmp_path: Path) -> Iterator[tuple[UpProcess, httpx.Client]]:
    up = UpProcess.start(tmp_path / "data", free_port_pair(), env={"SM_VALIDATE_RESPONSES": "true"})
    try:
        shown = up.wait_ready()
        data = DataDir(tmp_path / "data")
        with httpx.Client(
            base_url=shown.api_url,
            verify=ssl.create_default_context(cafile=str(data.ca_cert)),
            timeout=10,
        ) as client:
            yield up, client
    finally:
        up.stop()


def token(client: httpx.Client, **form: str) -> httpx.Response:
    return client.post("/api/v1/oauth/token", data=form)


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def the_local_node(client: httpx.Client, admin: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 15
    while True:
        listed = client.get("/api/v1/nodes", headers=admin)
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        if items and items[0]["status"] == "online":
            node: dict[str, object] = items[0]
            return node
        assert time.monotonic() < deadline, f"the local agent never came online: {items}"
        time.sleep(0.2)


def test_the_secret_key_runs_the_fleet_and_a_viewer_only_reads(
    core: tuple[UpProcess, httpx.Client],
) -> None:
    up, client = core
    secret = up.data.secret_key.read_text().strip()
    enrollment = up.data.enrollment_key.read_text().strip()

    # The enrollment key is no client secret, for any client.
    for client_id in ("sm-admin", "sm-services"):
        refused = token(
            client, grant_type="client_credentials", client_id=client_id, client_secret=enrollment
        )
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"

    admin = bearer(
        token(client, grant_type="client_credentials", client_id="sm-admin", client_secret=secret)
    )
    node = the_local_node(client, admin)
    node_id = str(node["id"])

    # Group and label it; the list filters by both.
    assert client.post("/api/v1/groups", json={"name": "web"}, headers=admin).status_code == 201
    changed = client.patch(
        f"/api/v1/nodes/{node_id}",
        headers=admin,
        json={"group": "web", "labels": {"env": "prod", "tier": "edge"}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["group"] == "web"
    assert changed.json()["labels"] == {"env": "prod", "tier": "edge"}
    matched = client.get(
        "/api/v1/nodes",
        headers=admin,
        params={"selector": "env=prod,tier in (edge,core)", "group": "web"},
    )
    assert [n["id"] for n in matched.json()["items"]] == [node_id]
    unmatched = client.get("/api/v1/nodes", headers=admin, params={"selector": "env!=prod"})
    assert unmatched.json()["total"] == 0

    # A viewer reads, and every write is refused.
    created = client.post(
        "/api/v1/users",
        headers=admin,
        json={"username": "vera", "password": "a long viewer password", "role": "viewer"},
    )
    assert created.status_code == 201, created.text
    viewer = bearer(
        token(
            client,
            grant_type="password",
            client_id="sm-client",
            username="vera",
            password="a long viewer password",
        )
    )
    assert client.get(f"/api/v1/nodes/{node_id}", headers=viewer).status_code == 200
    writes = [
        client.patch(f"/api/v1/nodes/{node_id}", headers=viewer, json={"name": "mine"}),
        client.post("/api/v1/groups", headers=viewer, json={"name": "db"}),
        client.delete(f"/api/v1/nodes/{node_id}", headers=viewer),
        client.post(
            "/api/v1/users",
            headers=viewer,
            json={"username": "eve", "password": "another long password", "role": "admin"},
        ),
    ]
    for refused in writes:
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert client.get(f"/api/v1/nodes/{node_id}", headers=admin).json()["name"] != "mine"

    # The admin deletes the node: gone from the list, its group can go too.
    assert client.delete(f"/api/v1/nodes/{node_id}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/nodes/{node_id}", headers=admin).status_code == 404
    assert client.get("/api/v1/nodes", headers=admin).json()["total"] == 0
    assert client.delete("/api/v1/groups/web", headers=admin).status_code == 204

"""``POST /api/v1/nodes/resolve``: a target (ids, groups, selector, all) to node ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from sm_shared.datadir import DataDir
from sm_shared.tokens import issue_access_token

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def fleet(
    client: TestClient, operator: dict[str, str], enroll: Callable[..., dict[str, Any]]
) -> dict[str, str]:
    """web-1, web-2 (group web; env=prod / env=staging), db-1 (group db; env=prod), lone (none)."""
    ids = {hostname: enroll(hostname)["node_id"] for hostname in ("web-1", "web-2", "db-1", "lone")}
    for group in ("web", "db", "empty"):
        client.post("/api/v1/groups", json={"name": group}, headers=operator)
    setup = [
        ("web-1", {"group": "web", "labels": {"env": "prod", "tier": "web"}}),
        ("web-2", {"group": "web", "labels": {"env": "staging", "tier": "web"}}),
        ("db-1", {"group": "db", "labels": {"env": "prod"}}),
    ]
    for hostname, change in setup:
        response = client.patch(f"/api/v1/nodes/{ids[hostname]}", json=change, headers=operator)
        assert response.status_code == 200
    return ids


def resolve(client: TestClient, viewer: dict[str, str], target: dict[str, Any]) -> Any:
    return client.post("/api/v1/nodes/resolve", json=target, headers=viewer)


@pytest.mark.parametrize(
    ("target", "hostnames"),
    [
        ({"all": True}, ["web-1", "web-2", "db-1", "lone"]),
        ({"node_ids": ["lone", "db-1"]}, ["lone", "db-1"]),
        ({"node_ids": []}, []),
        ({"groups": ["web"]}, ["web-1", "web-2"]),
        ({"groups": ["web", "db"]}, ["web-1", "web-2", "db-1"]),
        ({"groups": ["empty"]}, []),
        ({"selector": "env=prod"}, ["web-1", "db-1"]),
        ({"selector": "!env"}, ["lone"]),
        ({"selector": "env notin (prod)"}, ["web-2", "lone"]),
        ({"selector": "tier=web,env=prod"}, ["web-1"]),
        # members are OR'ed
        ({"groups": ["db"], "selector": "env=staging"}, ["db-1", "web-2"]),
        ({"node_ids": ["lone"], "groups": ["db"]}, ["lone", "db-1"]),
        ({"node_ids": ["web-1"], "selector": "tier=web"}, ["web-1", "web-2"]),
        ({"all": True, "groups": ["db"]}, ["web-1", "web-2", "db-1", "lone"]),
    ],
)
def test_targets(
    client: TestClient,
    viewer: dict[str, str],
    fleet: dict[str, str],
    target: dict[str, Any],
    hostnames: list[str],
) -> None:
    if "node_ids" in target:
        target = {**target, "node_ids": [fleet[h] for h in target["node_ids"]]}
    response = resolve(client, viewer, target)
    assert response.status_code == 200, response.text
    expected = sorted(fleet[h] for h in hostnames)
    assert response.json() == {"node_ids": expected, "count": len(expected)}


def test_unknown_names_and_bad_targets(
    client: TestClient, viewer: dict[str, str], fleet: dict[str, str]
) -> None:
    unknown_ids = resolve(client, viewer, {"node_ids": [fleet["lone"], UNKNOWN]})
    assert unknown_ids.status_code == 404
    assert unknown_ids.json()["unknown_node_ids"] == [UNKNOWN]
    unknown_group = resolve(client, viewer, {"groups": ["web", "nope"]})
    assert unknown_group.status_code == 404
    assert unknown_group.json()["group"] == "nope"
    bad_selector = resolve(client, viewer, {"selector": "env in (prod"})
    assert bad_selector.status_code == 400
    assert bad_selector.json()["position"] == 12
    for body in (
        {},
        {"all": False},
        {"selector": ""},
        {"node_ids": ["not-a-uuid"]},
        {"groups": ["bad name"]},
        {"labels": {"env": "prod"}},
    ):
        response = resolve(client, viewer, body)
        assert response.status_code == 400, body
        assert response.headers["content-type"] == "application/problem+json"


def test_resolve_needs_nodes_read(
    client: TestClient, data_dir: DataDir, viewer: dict[str, str]
) -> None:
    assert client.post("/api/v1/nodes/resolve", json={"all": True}).status_code == 401
    token = issue_access_token(
        data_dir, subject="m", client_id="tests", scopes=["metrics:read"], ttl=600
    )
    refused = client.post(
        "/api/v1/nodes/resolve", json={"all": True}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 403
    assert resolve(client, viewer, {"all": True}).json() == {"node_ids": [], "count": 0}

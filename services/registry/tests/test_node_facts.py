"""``PUT /api/v1/nodes/{id}/facts`` (the gateway reports facts) and revocations in a gateway's inbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import Redis
from starlette.testclient import TestClient

from sm_shared.streams import AUDIT_STREAM, gateway_inbox, route_key

Enroll = Callable[..., dict[str, Any]]
Stream = Callable[[str], list[dict[str, str]]]


def test_facts_follow_the_agent(
    client: TestClient,
    admin: dict[str, str],
    service: dict[str, str],
    enroll: Enroll,
    facts: dict[str, Any],
    stream: Stream,
) -> None:
    node_id = enroll("web-1")["node_id"]
    audit_before = len(stream(AUDIT_STREAM))
    path = f"/api/v1/nodes/{node_id}/facts"
    changed = {**facts, "hostname": "web-1b", "kernel": "6.1.0-27-amd64"}

    response = client.put(path, json=changed, headers=service)
    assert response.status_code == 204, response.text
    node = client.get(f"/api/v1/nodes/{node_id}", headers=admin).json()
    assert node["facts"] == changed
    # The name was the host name: it follows it.
    assert (node["hostname"], node["name"]) == ("web-1b", "web-1b")

    # Equal facts change nothing, not even updated_at.
    assert client.put(path, json=changed, headers=service).status_code == 204
    again = client.get(f"/api/v1/nodes/{node_id}", headers=admin).json()
    assert again["updated_at"] == node["updated_at"]

    # A name an operator chose stays.
    renamed = client.patch(f"/api/v1/nodes/{node_id}", json={"name": "frontend"}, headers=admin)
    assert renamed.status_code == 200
    assert (
        client.put(path, json={**changed, "hostname": "web-1c"}, headers=service).status_code == 204
    )
    node = client.get(f"/api/v1/nodes/{node_id}", headers=admin).json()
    assert (node["hostname"], node["name"]) == ("web-1c", "frontend")
    # Only the rename is audited; facts are not.
    actions = [fields["action"] for fields in stream(AUDIT_STREAM)[audit_before:]]
    assert actions == ["node.update"]


def test_facts_are_for_services_only_and_checked(
    client: TestClient,
    admin: dict[str, str],
    service: dict[str, str],
    enroll: Enroll,
    facts: dict[str, Any],
) -> None:
    node_id = enroll("web-1")["node_id"]
    path = f"/api/v1/nodes/{node_id}/facts"
    assert client.put(path, json=facts, headers=admin).status_code == 403  # no service scope
    assert client.put(path, json=facts).status_code == 401
    bad = client.put(path, json={**facts, "cpu_count": 0}, headers=service)
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    missing = client.put(
        "/api/v1/nodes/0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10/facts", json=facts, headers=service
    )
    assert missing.status_code == 404


def test_a_deleted_node_is_revoked_in_the_inbox_of_its_gateway(
    client: TestClient, admin: dict[str, str], enroll: Enroll, store: Redis, stream: Stream
) -> None:
    held, loose = enroll("web-1")["node_id"], enroll("web-2")["node_id"]
    store.set(route_key(held), "gw-7", px=60_000)
    assert client.delete(f"/api/v1/nodes/{held}", headers=admin).status_code == 204
    assert client.delete(f"/api/v1/nodes/{loose}", headers=admin).status_code == 204
    # Only the node a gateway held is delivered, to that gateway only.
    assert stream(gateway_inbox("gw-7")) == [
        {"kind": "revoke", "node_id": held, "reason": "deleted"}
    ]
    assert [key for key in store.scan_iter("gateway:*")] == [gateway_inbox("gw-7")]

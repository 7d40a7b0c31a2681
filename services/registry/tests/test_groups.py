"""Groups through the registry's API: create, list with counts, rename, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from sm_shared.audit import AuditEvent


def test_create_list_rename_delete(
    client: TestClient,
    operator: dict[str, str],
    enroll: Callable[..., dict[str, Any]],
    audit_events: Callable[[], list[AuditEvent]],
) -> None:
    created = client.post(
        "/api/v1/groups", json={"name": "web", "description": "Front ends"}, headers=operator
    )
    assert created.status_code == 201
    assert created.json()["name"] == "web"
    assert created.json()["description"] == "Front ends"
    assert created.json()["node_count"] == 0
    assert client.post("/api/v1/groups", json={"name": "db"}, headers=operator).status_code == 201
    duplicate = client.post("/api/v1/groups", json={"name": "web"}, headers=operator)
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"

    nodes = [enroll(f"n{i}")["node_id"] for i in range(3)]
    client.post(
        "/api/v1/nodes/bulk", json={"node_ids": nodes[:2], "group": "web"}, headers=operator
    )
    listed = client.get("/api/v1/groups", headers=operator).json()["items"]
    assert [(g["name"], g["node_count"]) for g in listed] == [("db", 0), ("web", 2)]

    renamed = client.patch("/api/v1/groups/web", json={"name": "frontend"}, headers=operator)
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["node_count"]) == ("frontend", 2)
    assert client.get("/api/v1/groups/web", headers=operator).status_code == 404
    # the nodes follow the rename (they reference the group, not its name)
    assert client.get(f"/api/v1/nodes/{nodes[0]}", headers=operator).json()["group"] == "frontend"
    taken = client.patch("/api/v1/groups/frontend", json={"name": "db"}, headers=operator)
    assert taken.status_code == 409
    described = client.patch(
        "/api/v1/groups/frontend", json={"description": "Web servers"}, headers=operator
    )
    assert described.json()["description"] == "Web servers"

    in_use = client.delete("/api/v1/groups/frontend", headers=operator)
    assert in_use.status_code == 409
    assert in_use.json()["node_count"] == 2
    assert "move or delete them first" in in_use.json()["detail"]
    client.post("/api/v1/nodes/bulk", json={"node_ids": nodes[:2], "group": None}, headers=operator)
    assert client.delete("/api/v1/groups/frontend", headers=operator).status_code == 204
    assert client.delete("/api/v1/groups/frontend", headers=operator).status_code == 404
    assert [g["name"] for g in client.get("/api/v1/groups", headers=operator).json()["items"]] == [
        "db"
    ]

    group_events = [
        (e.actor, e.action, e.target) for e in audit_events() if e.target.startswith("group:")
    ]
    assert group_events == [
        ("operator-user", "group.create", "group:web"),
        ("operator-user", "group.create", "group:db"),
        ("operator-user", "group.rename", "group:web"),
        ("operator-user", "group.update", "group:frontend"),
        ("operator-user", "group.delete", "group:frontend"),
    ]


def test_delete_is_refused_while_an_active_token_names_it(
    client: TestClient, admin: dict[str, str]
) -> None:
    client.post("/api/v1/groups", json={"name": "web"}, headers=admin)
    token = client.post(
        "/api/v1/enrollment-tokens", json={"group": "web", "ttl": 3600}, headers=admin
    ).json()
    refused = client.delete("/api/v1/groups/web", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["enrollment_token_ids"] == [token["id"]]
    client.post(f"/api/v1/enrollment-tokens/{token['id']}/revoke", headers=admin)
    assert client.delete("/api/v1/groups/web", headers=admin).status_code == 204
    # the revoked token stays listed, without the deleted group
    kept = client.get(f"/api/v1/enrollment-tokens/{token['id']}", headers=admin).json()
    assert (kept["state"], kept["group"]) == ("revoked", None)


def test_bad_input_and_scopes(
    client: TestClient, viewer: dict[str, str], operator: dict[str, str]
) -> None:
    for body in (
        {},
        {"name": ""},
        {"name": "-web"},
        {"name": "a b"},
        {"name": "x" * 64},
        {"name": "web", "extra": 1},
        {"name": 5},
    ):
        response = client.post("/api/v1/groups", json=body, headers=operator)
        assert response.status_code == 400, body
        assert response.headers["content-type"] == "application/problem+json"
    client.post("/api/v1/groups", json={"name": "web"}, headers=operator)
    assert client.patch("/api/v1/groups/web", json={}, headers=operator).status_code == 400
    assert (
        client.patch("/api/v1/groups/nope", json={"name": "x"}, headers=operator).status_code == 404
    )
    assert client.get("/api/v1/groups/bad%20name", headers=operator).status_code == 400

    assert client.get("/api/v1/groups", headers=viewer).status_code == 200
    assert client.post("/api/v1/groups", json={"name": "x"}, headers=viewer).status_code == 403
    assert client.patch("/api/v1/groups/web", json={"name": "x"}, headers=viewer).status_code == 403
    assert client.delete("/api/v1/groups/web", headers=viewer).status_code == 403
    assert client.get("/api/v1/groups").status_code == 401
    assert client.get("/api/v1/groups/web", headers=viewer).json()["name"] == "web"

"""Roles: read-only built-ins, the custom role lifecycle, scope validation; real Redis and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from starlette.testclient import TestClient

from sm_registry import RegistrySettings, create_app
from sm_registry.oauth import TOKEN_PATH
from sm_shared.audit import AuditEvent
from sm_shared.datadir import DataDir
from sm_shared.scopes import BUILTIN_ROLES
from sm_shared.streams import AUDIT_STREAM
from sm_shared.tokens import TokenVerifier, issue_access_token

ROLES = "/api/v1/roles"


@pytest.fixture
def client(data_dir: DataDir, redis_url: str) -> Iterator[TestClient]:
    settings = RegistrySettings(
        data_dir=data_dir.root, redis_url=redis_url, validate_responses=True
    )
    with create_app(settings).test_client(base_url="https://testserver") as test_client:
        yield test_client


@pytest.fixture
def admin(data_dir: DataDir) -> dict[str, str]:
    token = issue_access_token(
        data_dir, subject="root", client_id="sm-admin", scopes=["admin"], ttl=300
    )
    return {"Authorization": f"Bearer {token}"}


def audit_actions(redis_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        events = [
            AuditEvent.from_fields(fields)
            for _, fields in cast(list[tuple[str, dict[str, str]]], client.xrange(AUDIT_STREAM))
        ]
    finally:
        client.close()
    return [(e.action, e.target, e.detail) for e in events]


def sign_in(client: TestClient, username: str, password: str) -> dict[str, Any]:
    response = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "sm-client",
            "username": username,
            "password": password,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    for word in words:
        assert word in body["detail"], body
    return body


def test_builtin_roles_are_listed_first_and_read_only(
    client: TestClient, admin: dict[str, str]
) -> None:
    listed = client.get(ROLES, headers=admin).json()
    assert [r["name"] for r in listed["items"]] == ["viewer", "operator", "admin"]
    for role in listed["items"]:
        assert role["builtin"] is True
        assert tuple(role["scopes"]) == BUILTIN_ROLES[role["name"]]
    assert client.get(f"{ROLES}/operator", headers=admin).json()["scopes"] == list(
        BUILTIN_ROLES["operator"]
    )
    assert_problem(
        client.patch(f"{ROLES}/viewer", json={"scopes": ["admin"]}, headers=admin),
        409,
        "built-in",
    )
    assert_problem(client.delete(f"{ROLES}/admin", headers=admin), 409, "built-in")
    assert_problem(
        client.post(ROLES, json={"name": "viewer", "scopes": ["admin"]}, headers=admin),
        409,
        "viewer",
    )
    assert client.get(f"{ROLES}/viewer", headers=admin).json()["scopes"] == list(
        BUILTIN_ROLES["viewer"]
    )


def test_custom_role_lifecycle(
    client: TestClient, admin: dict[str, str], data_dir: DataDir, redis_url: str
) -> None:
    created = client.post(
        ROLES,
        json={
            "name": "auditor",
            "scopes": ["audit:read", "nodes:read"],
            "description": "Reads the audit log",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    # Scopes come back in canonical order.
    assert created.json() == {
        "name": "auditor",
        "scopes": ["nodes:read", "audit:read"],
        "builtin": False,
        "description": "Reads the audit log",
    }
    assert [r["name"] for r in client.get(ROLES, headers=admin).json()["items"]][-1] == "auditor"

    # Assigned to a user, it decides their token's scopes.
    client.post(
        "/api/v1/users",
        json={"username": "aud", "password": "aud-password", "role": "auditor"},
        headers=admin,
    )
    token = sign_in(client, "aud", "aud-password")
    assert TokenVerifier(data_dir).verify(token["access_token"]).scopes == {
        "nodes:read",
        "audit:read",
    }

    # New scopes reach new tokens.
    updated = client.patch(
        f"{ROLES}/auditor", json={"scopes": ["audit:read", "metrics:read"]}, headers=admin
    )
    assert updated.json()["scopes"] == ["metrics:read", "audit:read"]
    assert sign_in(client, "aud", "aud-password")["scope"] == "audit:read metrics:read"
    described = client.patch(f"{ROLES}/auditor", json={"description": "Audits"}, headers=admin)
    assert described.json()["description"] == "Audits"
    assert described.json()["scopes"] == ["metrics:read", "audit:read"]

    # Held by a user and a service client: deleting it is refused, clearly.
    client.post("/api/v1/clients", json={"client_id": "siem", "role": "auditor"}, headers=admin)
    refused = assert_problem(client.delete(f"{ROLES}/auditor", headers=admin), 409, "assigned")
    assert refused["assigned"] == {"users": 1, "service_clients": 1}
    assert client.get(f"{ROLES}/auditor", headers=admin).status_code == 200

    client.patch("/api/v1/users/aud", json={"role": "viewer"}, headers=admin)
    client.delete("/api/v1/clients/siem", headers=admin)
    assert client.delete(f"{ROLES}/auditor", headers=admin).status_code == 204
    assert_problem(client.get(f"{ROLES}/auditor", headers=admin), 404, "auditor")
    assert_problem(client.delete(f"{ROLES}/auditor", headers=admin), 404)
    assert_problem(client.patch(f"{ROLES}/auditor", json={"scopes": ["admin"]}, headers=admin), 404)

    role_events = [a for a in audit_actions(redis_url) if a[0].startswith("role.")]
    assert role_events == [
        ("role.create", "role:auditor", {"scopes": ["nodes:read", "audit:read"]}),
        ("role.update", "role:auditor", {"scopes": ["metrics:read", "audit:read"]}),
        ("role.update", "role:auditor", {"description": "Audits"}),
        ("role.delete", "role:auditor", {}),
    ]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"name": "ops", "scopes": ["service"]}, ["service"]),
        ({"name": "ops", "scopes": ["nodes:read", "root"]}, ["root"]),
        ({"name": "ops", "scopes": []}, ["non-empty", "scopes"]),
        ({"name": "ops", "scopes": ["nodes:read", "nodes:read"]}, ["non-unique"]),
        ({"name": "ops", "scopes": "nodes:read"}, ["array"]),
        ({"name": "Ops!", "scopes": ["nodes:read"]}, ["Ops!"]),
        ({"name": "ops", "scopes": ["nodes:read"], "builtin": True}, ["builtin"]),
        ({"scopes": ["nodes:read"]}, ["name"]),
    ],
)
def test_bad_role_input_is_a_precise_problem(
    client: TestClient,
    admin: dict[str, str],
    redis_url: str,
    body: dict[str, Any],
    words: list[str],
) -> None:
    assert_problem(client.post(ROLES, json=body, headers=admin), 400, *words)
    assert client.get(ROLES, headers=admin).json()["total"] == 3
    assert audit_actions(redis_url) == []


def test_bad_role_updates(client: TestClient, admin: dict[str, str]) -> None:
    client.post(ROLES, json={"name": "ops", "scopes": ["nodes:read"]}, headers=admin)
    assert_problem(client.patch(f"{ROLES}/ops", json={}, headers=admin), 400)
    assert_problem(
        client.patch(f"{ROLES}/ops", json={"scopes": ["service"]}, headers=admin), 400, "service"
    )
    assert_problem(client.patch(f"{ROLES}/ops", json={"name": "x"}, headers=admin), 400, "name")
    assert client.get(f"{ROLES}/ops", headers=admin).json()["scopes"] == ["nodes:read"]


def test_duplicate_custom_role_conflicts(client: TestClient, admin: dict[str, str]) -> None:
    body = {"name": "ops", "scopes": ["nodes:read"]}
    assert client.post(ROLES, json=body, headers=admin).status_code == 201
    assert_problem(client.post(ROLES, json=body, headers=admin), 409, "ops")


def test_viewer_cannot_read_or_change_roles(client: TestClient, data_dir: DataDir) -> None:
    token = issue_access_token(
        data_dir, subject="v", client_id="sm-client", scopes=BUILTIN_ROLES["viewer"], ttl=300
    )
    viewer = {"Authorization": f"Bearer {token}"}
    assert client.get(ROLES, headers=viewer).status_code == 403
    assert (
        client.post(ROLES, json={"name": "x", "scopes": ["admin"]}, headers=viewer).status_code
        == 403
    )
    assert client.patch(f"{ROLES}/x", json={"scopes": ["admin"]}, headers=viewer).status_code == 403
    assert client.delete(f"{ROLES}/x", headers=viewer).status_code == 403
    assert client.get(ROLES).status_code == 401

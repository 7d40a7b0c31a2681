"""Roles: read-only built-ins, the custom role lifecycle, scope validation; real Redis and SQLite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from sm_shared.audit import AuditEvent
from sm_shared.datadir import DataDir
from sm_shared.scopes import BUILTIN_ROLES
from sm_shared.tokens import TokenVerifier

ROLES = "/api/v1/roles"
AssertProblem = Callable[..., dict[str, Any]]
AuditEvents = Callable[[], list[AuditEvent]]


def test_builtin_roles_are_listed_first_and_read_only(
    client: TestClient, admin: dict[str, str], assert_problem: AssertProblem
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
    client: TestClient,
    admin: dict[str, str],
    data_dir: DataDir,
    create_user: Callable[..., dict[str, Any]],
    sign_in: Callable[..., dict[str, Any]],
    audit_events: AuditEvents,
    assert_problem: AssertProblem,
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
    create_user("aud", "auditor")
    token = sign_in("aud", "aud-password")
    assert TokenVerifier(data_dir).verify(token["access_token"]).scopes == {
        "nodes:read",
        "audit:read",
    }

    # New scopes reach new tokens.
    updated = client.patch(
        f"{ROLES}/auditor", json={"scopes": ["audit:read", "metrics:read"]}, headers=admin
    )
    assert updated.json()["scopes"] == ["metrics:read", "audit:read"]
    assert sign_in("aud", "aud-password")["scope"] == "audit:read metrics:read"
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

    role_events = [
        (e.action, e.target, e.detail) for e in audit_events() if e.action.startswith("role.")
    ]
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
    audit_events: AuditEvents,
    assert_problem: AssertProblem,
    body: dict[str, Any],
    words: list[str],
) -> None:
    assert_problem(client.post(ROLES, json=body, headers=admin), 400, *words)
    assert client.get(ROLES, headers=admin).json()["total"] == 3
    assert audit_events() == []


def test_bad_role_updates(
    client: TestClient, admin: dict[str, str], assert_problem: AssertProblem
) -> None:
    client.post(ROLES, json={"name": "ops", "scopes": ["nodes:read"]}, headers=admin)
    assert_problem(client.patch(f"{ROLES}/ops", json={}, headers=admin), 400)
    assert_problem(
        client.patch(f"{ROLES}/ops", json={"scopes": ["service"]}, headers=admin), 400, "service"
    )
    assert_problem(client.patch(f"{ROLES}/ops", json={"name": "x"}, headers=admin), 400, "name")
    assert client.get(f"{ROLES}/ops", headers=admin).json()["scopes"] == ["nodes:read"]


def test_duplicate_custom_role_conflicts(
    client: TestClient, admin: dict[str, str], assert_problem: AssertProblem
) -> None:
    body = {"name": "ops", "scopes": ["nodes:read"]}
    assert client.post(ROLES, json=body, headers=admin).status_code == 201
    assert_problem(client.post(ROLES, json=body, headers=admin), 409, "ops")


def test_viewer_cannot_read_or_change_roles(client: TestClient, viewer: dict[str, str]) -> None:
    assert client.get(ROLES, headers=viewer).status_code == 403
    assert (
        client.post(ROLES, json={"name": "x", "scopes": ["admin"]}, headers=viewer).status_code
        == 403
    )
    assert client.patch(f"{ROLES}/x", json={"scopes": ["admin"]}, headers=viewer).status_code == 403
    assert client.delete(f"{ROLES}/x", headers=viewer).status_code == 403
    assert client.get(ROLES).status_code == 401

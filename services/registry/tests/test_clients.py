"""Admin-created service clients: secret shown once, tokens by role, deletion; real Redis and SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from sm_registry.oauth import TOKEN_PATH
from sm_shared.audit import AuditEvent
from sm_shared.datadir import DataDir
from sm_shared.scopes import BUILTIN_ROLES
from sm_shared.tokens import TokenVerifier

CLIENTS = "/api/v1/clients"
AssertProblem = Callable[..., dict[str, Any]]


def client_token(client: TestClient, client_id: str, secret: str) -> Any:
    return client.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def test_service_client_lifecycle(
    client: TestClient,
    admin: dict[str, str],
    data_dir: DataDir,
    audit_events: Callable[[], list[AuditEvent]],
    assert_problem: AssertProblem,
) -> None:
    created = client.post(
        CLIENTS,
        json={"client_id": "backup-job", "role": "viewer", "description": "Nightly export"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body.pop("client_secret")
    assert len(secret) >= 40
    assert body["client_id"] == "backup-job"
    assert body["role"] == "viewer"
    assert body["description"] == "Nightly export"

    # The secret is shown once: never listed, never read back, stored only as a hash.
    listed = client.get(CLIENTS, headers=admin)
    assert listed.json() == {"items": [body], "total": 1}
    assert secret not in listed.text
    assert client.get(f"{CLIENTS}/backup-job", headers=admin).json() == body
    with sqlite3.connect(data_dir.database("registry")) as db:
        rows = db.execute("SELECT * FROM service_clients").fetchall()
    assert secret not in repr(rows)

    # Its token carries its role's scopes.
    token = client_token(client, "backup-job", secret)
    assert token.status_code == 200, token.text
    claims = TokenVerifier(data_dir).verify(token.json()["access_token"])
    assert claims.scopes == frozenset(BUILTIN_ROLES["viewer"])
    assert claims.subject == "backup-job"
    assert claims.client_id == "backup-job"
    assert client_token(client, "backup-job", secret[:-2] + "xx").status_code == 401

    # A new role reaches the next token.
    changed = client.patch(f"{CLIENTS}/backup-job", json={"role": "operator"}, headers=admin)
    assert changed.json()["role"] == "operator"
    again = client_token(client, "backup-job", secret).json()
    assert TokenVerifier(data_dir).verify(again["access_token"]).scopes == frozenset(
        BUILTIN_ROLES["operator"]
    )

    # Deleted: no more tokens.
    assert client.delete(f"{CLIENTS}/backup-job", headers=admin).status_code == 204
    refused = client_token(client, "backup-job", secret)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert_problem(client.get(f"{CLIENTS}/backup-job", headers=admin), 404, "backup-job")
    assert_problem(client.delete(f"{CLIENTS}/backup-job", headers=admin), 404)

    events = audit_events()
    assert [(e.actor, e.action, e.target) for e in events] == [
        ("admin-user", "client.create", "client:backup-job"),
        ("admin-user", "client.update", "client:backup-job"),
        ("admin-user", "client.delete", "client:backup-job"),
    ]
    assert all(secret not in str(e.detail) for e in events)


def test_service_client_with_a_custom_role(client: TestClient, admin: dict[str, str]) -> None:
    client.post(
        "/api/v1/roles", json={"name": "exporter", "scopes": ["metrics:read"]}, headers=admin
    )
    secret = client.post(
        CLIENTS, json={"client_id": "grafana", "role": "exporter"}, headers=admin
    ).json()["client_secret"]
    token = client_token(client, "grafana", secret).json()
    assert token["scope"] == "metrics:read"
    narrowed = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": "grafana",
            "client_secret": secret,
            "scope": "nodes:read",
        },
    )
    assert narrowed.status_code == 400
    assert narrowed.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"client_id": "sm-backup", "role": "viewer"}, 400, ["reserved"]),
        ({"client_id": "ab", "role": "viewer"}, 400, ["ab"]),
        ({"client_id": "backup", "role": "nobody"}, 400, ["nobody"]),
        (
            {"client_id": "backup", "role": "viewer", "client_secret": "mine"},
            400,
            ["client_secret"],
        ),
        ({"client_id": "backup", "role": 3}, 400, ["3"]),
        ({"role": "viewer"}, 400, ["client_id"]),
    ],
)
def test_bad_client_input_is_a_precise_problem(
    client: TestClient,
    admin: dict[str, str],
    assert_problem: AssertProblem,
    body: dict[str, Any],
    status: int,
    words: list[str],
) -> None:
    assert_problem(client.post(CLIENTS, json=body, headers=admin), status, *words)
    assert client.get(CLIENTS, headers=admin).json()["total"] == 0


def test_names_are_unique_across_users_and_clients(
    client: TestClient,
    admin: dict[str, str],
    create_user: Callable[..., dict[str, Any]],
    assert_problem: AssertProblem,
) -> None:
    body = {"client_id": "backup", "role": "viewer"}
    assert client.post(CLIENTS, json=body, headers=admin).status_code == 201
    assert_problem(client.post(CLIENTS, json=body, headers=admin), 409, "backup")
    create_user("carol")
    assert_problem(
        client.post(CLIENTS, json={"client_id": "carol", "role": "viewer"}, headers=admin),
        409,
        "user",
    )


def test_bad_client_updates(
    client: TestClient, admin: dict[str, str], assert_problem: AssertProblem
) -> None:
    client.post(CLIENTS, json={"client_id": "backup", "role": "viewer"}, headers=admin)
    assert_problem(client.patch(f"{CLIENTS}/backup", json={}, headers=admin), 400)
    assert_problem(
        client.patch(f"{CLIENTS}/backup", json={"role": "nobody"}, headers=admin), 400, "nobody"
    )
    assert_problem(
        client.patch(f"{CLIENTS}/nobody", json={"role": "viewer"}, headers=admin), 404, "nobody"
    )
    assert client.get(f"{CLIENTS}/backup", headers=admin).json()["role"] == "viewer"


def test_only_admins_manage_service_clients(client: TestClient, operator: dict[str, str]) -> None:
    body = {"client_id": "backup", "role": "admin"}
    assert client.post(CLIENTS, json=body, headers=operator).status_code == 403
    assert client.get(CLIENTS, headers=operator).status_code == 403
    assert client.delete(f"{CLIENTS}/backup", headers=operator).status_code == 403
    assert client.post(CLIENTS, json=body).status_code == 401

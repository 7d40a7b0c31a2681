"""Users: admin management, own password changes, audit events; real Redis and SQLite."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from sm_registry.oauth import TOKEN_PATH
from sm_registry.passwords import hash_password, needs_rehash, verify_nothing, verify_password
from sm_shared.audit import AuditEvent
from sm_shared.datadir import DataDir
from sm_shared.tokens import issue_access_token

USERS = "/api/v1/users"
AssertProblem = Callable[..., dict[str, Any]]
AuditEvents = Callable[[], list[AuditEvent]]
SignIn = Callable[..., dict[str, Any]]


@pytest.fixture
def alice(create_user: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """A viewer named alice, password ``alice-password``."""
    return create_user("alice")


def bearer(token: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['access_token']}"}


def test_user_lifecycle_with_audit(
    client: TestClient,
    admin: dict[str, str],
    audit_events: AuditEvents,
    assert_problem: AssertProblem,
) -> None:
    created = client.post(
        USERS,
        json={"username": "alice", "password": "alice-password", "role": "operator"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["username"] == "alice"
    assert user["role"] == "operator"
    assert user["disabled"] is False
    assert "password" not in created.text

    assert client.get(f"{USERS}/alice", headers=admin).json() == user
    client.post(
        USERS, json={"username": "bob", "password": "bob-password", "role": "viewer"}, headers=admin
    )
    listed = client.get(USERS, headers=admin).json()
    assert [u["username"] for u in listed["items"]] == ["alice", "bob"]
    assert listed["total"] == 2

    changed = client.patch(f"{USERS}/alice", json={"role": "viewer"}, headers=admin).json()
    assert changed["role"] == "viewer"
    assert changed["updated_at"] >= user["updated_at"]
    disabled = client.patch(f"{USERS}/alice", json={"disabled": True}, headers=admin).json()
    assert disabled["disabled"] is True
    assert client.get(f"{USERS}/alice", headers=admin).json()["disabled"] is True

    assert client.delete(f"{USERS}/alice", headers=admin).status_code == 204
    assert_problem(client.get(f"{USERS}/alice", headers=admin), 404, "alice")
    assert_problem(client.delete(f"{USERS}/alice", headers=admin), 404)
    assert_problem(client.patch(f"{USERS}/alice", json={"disabled": False}, headers=admin), 404)

    events = [(e.actor, e.action, e.target, e.detail) for e in audit_events()]
    assert events == [
        ("admin-user", "user.create", "user:alice", {"role": "operator"}),
        ("admin-user", "user.create", "user:bob", {"role": "viewer"}),
        ("admin-user", "user.update", "user:alice", {"role": "viewer"}),
        ("admin-user", "user.update", "user:alice", {"disabled": True}),
        ("admin-user", "user.delete", "user:alice", {}),
    ]
    assert all(e.service == "registry" for e in audit_events())


@pytest.mark.usefixtures("alice")
def test_passwords_are_stored_as_argon2id_hashes(data_dir: DataDir) -> None:
    with sqlite3.connect(data_dir.database("registry")) as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE username='alice'").fetchone()
    assert stored.startswith("$argon2id$")
    assert "alice-password" not in stored


@pytest.mark.usefixtures("alice")
def test_viewer_and_operator_tokens_cannot_manage_users(
    client: TestClient, viewer: dict[str, str], operator: dict[str, str], sign_in: SignIn
) -> None:
    for headers in (viewer, operator):
        body = {"username": "mallory", "password": "mallory-password", "role": "admin"}
        assert client.post(USERS, json=body, headers=headers).status_code == 403
        assert client.get(USERS, headers=headers).status_code == 403
        assert (
            client.patch(f"{USERS}/alice", json={"role": "admin"}, headers=headers).status_code
            == 403
        )
        assert client.delete(f"{USERS}/alice", headers=headers).status_code == 403
    # A real viewer token from the password grant, too.
    signed_in = bearer(sign_in("alice", "alice-password"))
    assert (
        client.patch(f"{USERS}/alice", json={"role": "admin"}, headers=signed_in).status_code == 403
    )
    assert client.get(USERS).status_code == 401
    assert client.get(USERS, headers={"Authorization": "Bearer nonsense"}).status_code == 401


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"username": "alice", "password": "alice-password", "role": "viewer", "admin": True},
            ["admin"],
        ),
        ({"username": "alice", "password": 12345678, "role": "viewer"}, ["12345678", "string"]),
        ({"username": "Alice!", "password": "alice-password", "role": "viewer"}, ["Alice!"]),
        ({"username": "alice", "password": "short", "role": "viewer"}, ["short"]),
        ({"username": "alice", "role": "viewer"}, ["password"]),
        ({"username": "alice", "password": "alice-password", "role": "overlord"}, ["overlord"]),
        ({"username": "me", "password": "alice-password", "role": "viewer"}, ["reserved"]),
        ({"username": "sm-admin", "password": "alice-password", "role": "viewer"}, ["reserved"]),
    ],
)
def test_bad_user_input_is_a_precise_problem(
    client: TestClient,
    admin: dict[str, str],
    audit_events: AuditEvents,
    assert_problem: AssertProblem,
    body: dict[str, Any],
    words: list[str],
) -> None:
    response = client.post(USERS, json=body, headers=admin)
    assert_problem(response, 400, *words)
    assert client.get(USERS, headers=admin).json()["total"] == 0
    assert audit_events() == []


@pytest.mark.usefixtures("alice")
def test_bad_updates(
    client: TestClient, admin: dict[str, str], assert_problem: AssertProblem
) -> None:
    assert_problem(client.patch(f"{USERS}/alice", json={}, headers=admin), 400)
    assert_problem(
        client.patch(f"{USERS}/alice", json={"disabled": "yes"}, headers=admin), 400, "yes"
    )
    assert_problem(
        client.patch(f"{USERS}/alice", json={"password": "short"}, headers=admin), 400, "password"
    )
    assert_problem(
        client.patch(f"{USERS}/alice", json={"role": "overlord"}, headers=admin), 400, "overlord"
    )
    assert client.get(f"{USERS}/alice", headers=admin).json()["role"] == "viewer"


def test_duplicate_names_conflict(
    client: TestClient, admin: dict[str, str], assert_problem: AssertProblem
) -> None:
    body = {"username": "alice", "password": "alice-password", "role": "viewer"}
    assert client.post(USERS, json=body, headers=admin).status_code == 201
    assert_problem(client.post(USERS, json=body, headers=admin), 409, "alice")
    # Users and service clients share one namespace.
    created = client.post(
        "/api/v1/clients", json={"client_id": "backup", "role": "viewer"}, headers=admin
    )
    assert created.status_code == 201
    assert_problem(
        client.post(USERS, json={**body, "username": "backup"}, headers=admin),
        409,
        "service client",
    )


@pytest.mark.usefixtures("alice")
def test_change_own_password(
    client: TestClient, sign_in: SignIn, audit_events: AuditEvents
) -> None:
    alice = bearer(sign_in("alice", "alice-password"))
    response = client.post(
        f"{USERS}/me/password",
        json={"current_password": "alice-password", "new_password": "a-better-password"},
        headers=alice,
    )
    assert response.status_code == 204, response.text
    refused = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "sm-client",
            "username": "alice",
            "password": "alice-password",
        },
    )
    assert refused.json()["error"] == "invalid_grant"
    sign_in("alice", "a-better-password")
    assert audit_events()[-1].action == "user.password"
    assert audit_events()[-1].actor == "alice"


@pytest.mark.usefixtures("alice")
def test_an_admin_sets_a_new_password_without_the_current_one(
    client: TestClient,
    admin: dict[str, str],
    sign_in: SignIn,
    audit_events: AuditEvents,
) -> None:
    response = client.patch(f"{USERS}/alice", json={"password": "reset-by-admin"}, headers=admin)
    assert response.status_code == 200, response.text
    assert "reset-by-admin" not in response.text
    refused = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "password",
            "client_id": "sm-client",
            "username": "alice",
            "password": "alice-password",
        },
    )
    assert refused.json()["error"] == "invalid_grant"
    sign_in("alice", "reset-by-admin")
    last = audit_events()[-1]
    assert (last.action, last.target, last.detail) == (
        "user.update",
        "user:alice",
        {"password_changed": True},
    )


@pytest.mark.usefixtures("alice")
def test_change_own_password_refusals(
    client: TestClient,
    data_dir: DataDir,
    admin: dict[str, str],
    sign_in: SignIn,
    assert_problem: AssertProblem,
) -> None:
    alice = bearer(sign_in("alice", "alice-password"))
    path = f"{USERS}/me/password"
    assert_problem(
        client.post(
            path,
            json={"current_password": "wrong-password", "new_password": "n" * 12},
            headers=alice,
        ),
        403,
        "current password",
    )
    assert_problem(
        client.post(
            path,
            json={"current_password": "alice-password", "new_password": "short"},
            headers=alice,
        ),
        400,
        "short",
    )
    assert_problem(
        client.post(
            path,
            json={
                "current_password": "alice-password",
                "new_password": "n" * 12,
                "username": "bob",
            },
            headers=alice,
        ),
        400,
        "username",
    )
    # Service clients and the secret key's token have no password.
    assert_problem(
        client.post(path, json={"current_password": "x", "new_password": "n" * 12}, headers=admin),
        403,
        "only users",
    )
    # A token of a user who no longer exists.
    token = issue_access_token(
        data_dir, subject="ghost", client_id="sm-client", scopes=["nodes:read"], ttl=300
    )
    ghost = {"Authorization": f"Bearer {token}"}
    assert_problem(
        client.post(path, json={"current_password": "x", "new_password": "n" * 12}, headers=ghost),
        404,
        "ghost",
    )
    assert (
        client.post(path, json={"current_password": "x", "new_password": "n" * 12}).status_code
        == 401
    )
    # Nothing changed.
    sign_in("alice", "alice-password")


@pytest.mark.usefixtures("alice")
def test_wrong_current_passwords_back_off(
    client: TestClient, sign_in: SignIn, assert_problem: AssertProblem
) -> None:
    alice = bearer(sign_in("alice", "alice-password"))
    path = f"{USERS}/me/password"
    wrong = {"current_password": "wrong-password", "new_password": "n" * 12}
    for _ in range(6):
        assert client.post(path, json=wrong, headers=alice).status_code == 403
    blocked = client.post(
        path, json={"current_password": "alice-password", "new_password": "n" * 12}, headers=alice
    )
    body = assert_problem(blocked, 429, "retry")
    assert blocked.headers["retry-after"] == "1"
    assert body["retry_after"] == 1


@pytest.mark.usefixtures("alice")
def test_disabled_user_cannot_change_password(
    client: TestClient, admin: dict[str, str], sign_in: SignIn, assert_problem: AssertProblem
) -> None:
    alice = bearer(sign_in("alice", "alice-password"))
    client.patch(f"{USERS}/alice", json={"disabled": True}, headers=admin)
    assert_problem(
        client.post(
            f"{USERS}/me/password",
            json={"current_password": "alice-password", "new_password": "n" * 12},
            headers=alice,
        ),
        403,
        "disabled",
    )


@pytest.mark.usefixtures("alice")
def test_stale_hashes_are_upgraded_on_sign_in(data_dir: DataDir, sign_in: SignIn) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("alice-password")
    with sqlite3.connect(data_dir.database("registry")) as db:
        db.execute("UPDATE users SET password_hash=? WHERE username='alice'", (weak,))
    sign_in("alice", "alice-password")
    with sqlite3.connect(data_dir.database("registry")) as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE username='alice'").fetchone()
    assert stored != weak
    assert "m=65536,t=3,p=4" in stored


@pytest.mark.usefixtures("alice")
def test_unknown_users_cost_as_much_as_wrong_passwords(client: TestClient) -> None:
    # The answer time must not tell whether a user name exists (dummy argon2 verify).

    def median_seconds(username: str) -> float:
        times = []
        for n in range(3):
            started = time.perf_counter()
            response = client.post(
                TOKEN_PATH,
                data={
                    "grant_type": "password",
                    "client_id": "sm-client",
                    "username": username,
                    "password": f"wrong-{n}-password",
                },
            )
            times.append(time.perf_counter() - started)
            assert response.json()["error"] == "invalid_grant"
        return sorted(times)[1]

    known = median_seconds("alice")
    unknown = median_seconds("nobody")
    assert known > 0.02  # a real argon2 verification ran
    assert 0.4 < unknown / known < 2.5


def test_password_hashes() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert stored != hash_password("correct horse")  # salted
    assert verify_password(stored, "correct horse")
    assert not verify_password(stored, "correct horsE")
    assert not verify_password("not a hash", "correct horse")
    assert not verify_nothing("correct horse")
    assert not needs_rehash(stored)
    assert needs_rehash("not a hash")

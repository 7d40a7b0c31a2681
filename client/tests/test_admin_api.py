"""AdminApi against the real core: users, roles, service clients, enrollment tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from sm_client.api import ApiError, CoreApi, PasswordLogin
from sm_client.api.admin import AdminApi

from .conftest import Core


async def test_a_user_is_created_changed_disabled_and_deleted(
    core: Core, admin: CoreApi, tmp_path: Path
) -> None:
    api = AdminApi(admin)
    user = await api.create_user(
        {"username": "api-alice", "password": "correct horse battery", "role": "viewer"}
    )
    assert user["username"] == "api-alice"
    assert user["role"] == "viewer"
    assert user["disabled"] is False
    listed = await api.list_users()
    assert "api-alice" in [u["username"] for u in listed["items"]]
    assert listed["total"] == len(listed["items"])

    changed = await api.update_user("api-alice", {"role": "operator"})
    assert changed["role"] == "operator"
    assert (await api.get_user("api-alice"))["role"] == "operator"

    # she signs in, changes her own password, and signs in with the new one
    async with await CoreApi.bootstrap(core.api_url, core.secret_key, tmp_path / "ca.pem") as own:
        await own.sign_in(PasswordLogin("api-alice", "correct horse battery"))
        assert own.may("commands:run")
        assert not own.may("admin")
        await AdminApi(own).change_own_password(
            {"current_password": "correct horse battery", "new_password": "a better one, longer"}
        )
        await own.sign_in(PasswordLogin("api-alice", "a better one, longer"))
        with pytest.raises(ApiError) as refused:
            await AdminApi(own).list_users()
        assert refused.value.status == 403

    disabled = await api.update_user("api-alice", {"disabled": True})
    assert disabled["disabled"] is True
    async with await CoreApi.bootstrap(core.api_url, core.secret_key, tmp_path / "ca2.pem") as off:
        with pytest.raises(ApiError) as no_token:
            await off.sign_in(PasswordLogin("api-alice", "a better one, longer"))
        assert no_token.value.code == "invalid_grant"

    await api.delete_user("api-alice")
    with pytest.raises(ApiError) as gone:
        await api.get_user("api-alice")
    assert gone.value.status == 404


async def test_refusals_carry_the_problem(admin: CoreApi) -> None:
    api = AdminApi(admin)
    await api.create_user({"username": "api-bob", "password": "long enough pw", "role": "viewer"})
    with pytest.raises(ApiError) as twice:
        await api.create_user(
            {"username": "api-bob", "password": "long enough pw", "role": "viewer"}
        )
    assert twice.value.status == 409
    assert twice.value.title
    with pytest.raises(ApiError) as bad_role:
        await api.create_user(
            {"username": "api-carol", "password": "long enough pw", "role": "nope"}
        )
    assert bad_role.value.status in (400, 404)
    assert bad_role.value.detail
    with pytest.raises(ApiError) as short:
        await api.create_user({"username": "api-dave", "password": "short", "role": "viewer"})
    assert short.value.status == 400
    await api.delete_user("api-bob")


async def test_custom_roles_are_created_edited_and_deleted(admin: CoreApi) -> None:
    api = AdminApi(admin)
    roles = await api.list_roles()
    builtin = [r["name"] for r in roles["items"] if r["builtin"]]
    assert builtin == ["viewer", "operator", "admin"]
    role = await api.create_role(
        {"name": "api-auditor", "scopes": ["nodes:read", "audit:read"], "description": "Reads"}
    )
    assert role["builtin"] is False
    assert sorted(role["scopes"]) == ["audit:read", "nodes:read"]
    edited = await api.update_role("api-auditor", {"scopes": ["audit:read"], "description": "x"})
    assert edited["scopes"] == ["audit:read"]
    assert (await api.get_role("api-auditor"))["description"] == "x"
    with pytest.raises(ApiError) as builtin_edit:
        await api.update_role("viewer", {"description": "mine now"})
    assert builtin_edit.value.status == 409

    # a role held by a user cannot go
    await api.create_user(
        {"username": "api-erin", "password": "long enough pw", "role": "api-auditor"}
    )
    with pytest.raises(ApiError) as held:
        await api.delete_role("api-auditor")
    assert held.value.status == 409
    await api.delete_user("api-erin")
    await api.delete_role("api-auditor")
    assert "api-auditor" not in [r["name"] for r in (await api.list_roles())["items"]]


async def test_a_service_client_shows_its_secret_once(admin: CoreApi) -> None:
    api = AdminApi(admin)
    created = await api.create_client(
        {"client_id": "api-backup", "role": "viewer", "description": "Nightly export"}
    )
    assert created["client_secret"]
    listed = await api.list_clients()
    mine = [c for c in listed["items"] if c["client_id"] == "api-backup"]
    assert mine
    assert "client_secret" not in mine[0]
    changed = await api.update_client("api-backup", {"role": "operator"})
    assert changed["role"] == "operator"
    assert (await api.get_client("api-backup"))["description"] == "Nightly export"
    with pytest.raises(ApiError) as reserved:
        await api.create_client({"client_id": "sm-mine", "role": "viewer"})
    assert reserved.value.status in (400, 409)
    await api.delete_client("api-backup")
    with pytest.raises(ApiError) as gone:
        await api.get_client("api-backup")
    assert gone.value.status == 404


async def test_an_enrollment_token_is_created_listed_and_revoked(admin: CoreApi) -> None:
    api = AdminApi(admin)
    await admin.call("POST", "/api/v1/groups", json={"name": "api-web"})
    created = await api.create_enrollment_token(
        {
            "ttl": 3600,
            "max_uses": 3,
            "group": "api-web",
            "labels": {"env": "prod"},
            "description": "Rack 12",
        }
    )
    assert created["token"].startswith("smt1.")
    assert created["state"] == "active"
    assert created["uses_left"] == 3
    assert created["group"] == "api-web"
    assert created["labels"] == {"env": "prod"}
    listed = await api.list_enrollment_tokens()
    row = next(t for t in listed["items"] if t["id"] == created["id"])
    assert "token" not in row
    assert (await api.get_enrollment_token(created["id"]))["description"] == "Rack 12"

    unlimited = await api.create_enrollment_token({"max_uses": None})
    assert unlimited["max_uses"] is None
    assert unlimited["uses_left"] is None

    revoked = await api.revoke_enrollment_token(created["id"])
    assert revoked["state"] == "revoked"
    assert revoked["revoked_at"]
    again = await api.revoke_enrollment_token(created["id"])  # idempotent
    assert again["state"] == "revoked"

    with pytest.raises(ApiError) as no_group:
        await api.create_enrollment_token({"group": "api-no-such-group"})
    assert no_group.value.status == 404
    with pytest.raises(ApiError) as short_ttl:
        await api.create_enrollment_token({"ttl": 5})
    assert short_ttl.value.status == 400
    await api.revoke_enrollment_token(unlimited["id"])

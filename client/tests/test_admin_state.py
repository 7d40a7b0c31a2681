"""AdminState against the real core, and the admin forms' checks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sm_client.api import ApiError, CoreApi, PasswordLogin
from sm_client.api.admin import AdminApi
from sm_client.state.admin import (
    REFRESH_AFTER,
    AdminState,
    Tab,
    check_client,
    check_group,
    check_password,
    check_role,
    check_token,
    check_user,
    parse_labels,
)
from sm_client.state.feed import Handler, Message, Resync, Stop
from sm_client.state.observable import Phase

from .conftest import Core


class RecordingFeed:
    """A feed with no socket: it keeps the resyncs so a test can run them."""

    def __init__(self) -> None:
        self.resyncs: list[Resync] = []
        self.handlers: dict[str, list[Handler]] = {}

    def subscribe(self, topic: str, handler: Handler) -> Stop:
        self.handlers.setdefault(topic, []).append(handler)
        return lambda: self.handlers[topic].remove(handler)

    def publish(self, topic: str, message: Message) -> None:
        for handler in list(self.handlers.get(topic, [])):
            handler(message)

    def on_resync(self, resync: Resync) -> Stop:
        self.resyncs.append(resync)
        return lambda: self.resyncs.remove(resync)

    @property
    def connected(self) -> bool:
        return True


async def test_users_are_listed_created_changed_and_deleted(admin: CoreApi) -> None:
    state = AdminState(admin)
    seen: list[Phase] = []
    state.listen(lambda: seen.append(state.load_of(Tab.USERS).phase))
    await state.enter()
    assert state.allowed
    assert seen[0] is Phase.LOADING
    assert {"viewer", "operator", "admin"} <= set(state.role_names)
    assert state.load_of(Tab.USERS).phase in (Phase.READY, Phase.EMPTY)

    assert await state.create_user("st-alice", "correct horse battery", "viewer") is None
    alice = next(u for u in state.users if u["username"] == "st-alice")
    assert alice["role"] == "viewer"
    assert state.load_of(Tab.USERS).phase is Phase.READY

    problem = await state.create_user("st-alice", "correct horse battery", "viewer")
    assert problem is not None
    assert problem.status == 409
    assert problem.title
    assert not state.busy

    assert await state.set_role("st-alice", "operator") is None
    assert await state.set_disabled("st-alice", True) is None
    alice = next(u for u in state.users if u["username"] == "st-alice")
    assert alice["role"] == "operator"
    assert alice["disabled"] is True
    assert await state.set_disabled("st-alice", False) is None

    assert await state.delete_user("st-alice") is None
    assert "st-alice" not in [u["username"] for u in state.users]
    missing = await state.delete_user("st-alice")
    assert missing is not None
    assert missing.status == 404
    state.leave()


async def test_custom_roles_and_their_refusals(admin: CoreApi) -> None:
    state = AdminState(admin)
    await state.select(Tab.ROLES)
    assert state.tab is Tab.ROLES
    assert [r["name"] for r in state.roles if r["builtin"]] == ["viewer", "operator", "admin"]
    assert await state.create_role("st-auditor", ["audit:read"], "Reads the audit") is None
    assert await state.update_role("st-auditor", ["audit:read", "nodes:read"], "both") is None
    role = next(r for r in state.roles if r["name"] == "st-auditor")
    assert sorted(role["scopes"]) == ["audit:read", "nodes:read"]
    assert role["description"] == "both"
    builtin = await state.update_role("viewer", ["nodes:read"], "")
    assert builtin is not None
    assert builtin.status == 409
    assert await state.delete_role("st-auditor") is None
    assert "st-auditor" not in state.role_names


async def test_a_token_is_shown_once_then_revoked(admin: CoreApi) -> None:
    state = AdminState(admin)
    await state.select(Tab.GROUPS)
    assert await state.create_group("st-web", "Front ends") is None
    await state.select(Tab.TOKENS)
    assert "st-web" in state.group_names
    body, errors = check_token(3600, "2", "st-web", "env=prod, tier=web", "rack 12")
    assert errors == {}
    assert await state.create_token(body) is None
    assert state.revealed is not None
    assert state.revealed.kind == "token"
    assert state.revealed.secret.startswith("smt1.")
    token_id = state.revealed.name
    row = next(t for t in state.tokens if t["id"] == token_id)
    assert row["state"] == "active"
    assert row["labels"] == {"env": "prod", "tier": "web"}
    assert row["uses_left"] == 2
    state.dismiss_revealed()
    assert state.revealed is None

    # the group is still named by an active token: deleting it is refused with the reason
    await state.select(Tab.GROUPS)
    held = await state.delete_group("st-web")
    assert held is not None
    assert held.status == 409
    assert held.detail

    await state.select(Tab.TOKENS)
    assert await state.revoke_token(token_id) is None
    assert next(t for t in state.tokens if t["id"] == token_id)["state"] == "revoked"

    refused = await state.create_token({"group": "st-nowhere"})
    assert refused is not None
    assert refused.status == 404
    assert state.revealed is None

    await state.select(Tab.GROUPS)
    assert await state.update_group("st-web", "st-front", "renamed") is None
    group = next(g for g in state.groups if g["name"] == "st-front")
    assert group["description"] == "renamed"
    assert await state.delete_group("st-front") is None
    assert "st-front" not in state.group_names


async def test_a_service_client_reveals_its_secret(admin: CoreApi) -> None:
    state = AdminState(admin)
    await state.select(Tab.CLIENTS)
    assert state.load_of(Tab.CLIENTS).phase in (Phase.READY, Phase.EMPTY)
    assert await state.create_client("st-backup", "viewer", "Nightly") is None
    assert state.revealed is not None
    assert state.revealed.kind == "client"
    assert state.revealed.name == "st-backup"
    assert state.revealed.secret
    assert await state.update_client("st-backup", "operator", "Nightly export") is None
    client = next(c for c in state.clients if c["client_id"] == "st-backup")
    assert client["role"] == "operator"
    assert await state.delete_client("st-backup") is None
    assert state.load_of(Tab.CLIENTS).phase is Phase.EMPTY


async def test_a_viewer_is_refused_with_an_error_state(
    core: Core, admin: CoreApi, tmp_path: Path
) -> None:
    await AdminApi(admin).create_user(
        {"username": "st-viewer", "password": "long enough pw", "role": "viewer"}
    )
    async with await CoreApi.bootstrap(core.api_url, core.secret_key, tmp_path / "ca.pem") as api:
        await api.sign_in(PasswordLogin("st-viewer", "long enough pw"))
        state = AdminState(api)
        assert not state.allowed
        assert state.me == "st-viewer"
        await state.enter()
        load = state.load_of(Tab.USERS)
        assert load.phase is Phase.ERROR
        assert load.problem is not None
        assert load.problem.status == 403
    await AdminApi(admin).delete_user("st-viewer")


async def test_an_admin_resets_a_password_and_the_user_signs_in_with_it(
    core: Core, admin: CoreApi, tmp_path: Path
) -> None:
    state = AdminState(admin)
    await state.enter()
    assert await state.create_user("st-forgot", "the first password", "viewer") is None

    # the form is checked before anything is sent
    assert await state.reset_password("st-forgot", "short", "short") == {
        "password": "admin.error.password_short"
    }
    assert await state.reset_password("st-forgot", "a new password", "a new pasword") == {
        "again": "admin.error.password_mismatch"
    }
    missing = await state.reset_password("st-nobody", "a new password", "a new password")
    assert missing is not None
    assert not isinstance(missing, dict)
    assert missing.status == 404
    assert not state.busy

    assert await state.reset_password("st-forgot", "a new password", "a new password") is None
    assert "st-forgot" in [u["username"] for u in state.users]

    async with await CoreApi.bootstrap(core.api_url, core.secret_key, tmp_path / "ca.pem") as api:
        await api.sign_in(PasswordLogin("st-forgot", "a new password"))
        assert api.username == "st-forgot"
        assert api.may("nodes:read")
        old = await CoreApi.bootstrap(core.api_url, core.secret_key, tmp_path / "ca2.pem")
        async with old:
            with pytest.raises(ApiError) as refused:
                await old.sign_in(PasswordLogin("st-forgot", "the first password"))
            assert refused.value.code == "invalid_grant"
    assert await state.delete_user("st-forgot") is None
    state.leave()


async def test_a_reconnect_reads_the_tab_again(admin: CoreApi) -> None:
    feed = RecordingFeed()
    state = AdminState(admin, feed)
    await state.enter()
    assert len(feed.resyncs) == 1
    await AdminApi(admin).create_user(
        {"username": "st-elsewhere", "password": "long enough pw", "role": "viewer"}
    )
    assert "st-elsewhere" not in [u["username"] for u in state.users]
    await feed.resyncs[0]()
    assert "st-elsewhere" in [u["username"] for u in state.users]
    state.leave()
    assert feed.resyncs == []
    assert feed.handlers["fleet"] == []
    await AdminApi(admin).delete_user("st-elsewhere")


async def test_a_node_coming_online_reads_the_tokens_again(admin: CoreApi) -> None:
    feed = RecordingFeed()
    state = AdminState(admin, feed)
    await state.select(Tab.TOKENS)
    await state.enter()
    made = await AdminApi(admin).create_enrollment_token({"description": "st-elsewhere"})
    assert made["id"] not in [t["id"] for t in state.tokens]
    online = {"type": "event", "topic": "fleet", "event": {"type": "status", "status": "online"}}
    offline = {"type": "event", "topic": "fleet", "event": {"type": "status", "status": "offline"}}
    feed.publish("fleet", offline)  # not a new node: nothing to read
    assert state._pending is None
    for _ in range(20):  # a burst: one read
        feed.publish("fleet", online)
    first = state._pending
    assert first is not None
    await asyncio.sleep(REFRESH_AFTER + 1.0)
    assert first.done()
    assert made["id"] in [t["id"] for t in state.tokens]
    state.leave()
    await AdminApi(admin).revoke_enrollment_token(made["id"])


def test_the_forms_are_checked_before_they_are_sent() -> None:
    assert check_user("alice", "long enough", "viewer") == {}
    assert check_user("", "short", "") == {
        "username": "admin.error.required",
        "password": "admin.error.password_short",
        "role": "admin.error.required",
    }
    assert check_user("Alice!", "long enough", "viewer") == {"username": "admin.error.username"}
    assert check_user("me", "long enough", "viewer") == {"username": "admin.error.username"}
    assert check_role("auditor", ["audit:read"], "") == {}
    assert check_role("9x", [], "") == {
        "name": "admin.error.role_name",
        "scopes": "admin.error.scopes",
    }
    assert check_role("", ["audit:read"], "", new=False) == {}
    assert check_client("sm-mine", "viewer", "") == {"client_id": "admin.error.reserved"}
    assert check_client("ab", "viewer", "") == {"client_id": "admin.error.client_id"}
    assert check_password("long enough", "long enough") == {}
    assert check_password("short", "") == {"password": "admin.error.password_short"}
    assert check_password("long enough", "long enougH") == {
        "again": "admin.error.password_mismatch"
    }
    assert check_group("web-1", "") == {}
    assert check_group("-web", "") == {"name": "admin.error.group_name"}

    assert parse_labels("env=prod,\nexample.com/role=web, empty=") == {
        "env": "prod",
        "example.com/role": "web",
        "empty": "",
    }
    assert parse_labels("") == {}
    assert parse_labels("novalue") is None
    assert parse_labels("bad key=x") is None

    body, errors = check_token(86400, "", "", "", "")
    assert errors == {}
    assert body == {"ttl": 86400, "max_uses": None}
    _, errors = check_token(10, "0", "-x", "k", "")
    assert set(errors) == {"ttl", "uses", "group", "labels"}

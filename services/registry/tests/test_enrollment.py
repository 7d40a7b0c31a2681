"""Enrollment: the key, tokens, credentials, re-enrollment, duplicates, agent authentication."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from sm_registry import RegistrySettings
from sm_registry.enrollment import BACKOFF_BUCKET
from sm_shared.access_keys import KeyKind, b64url, rotate_access_key
from sm_shared.audit import AuditEvent
from sm_shared.command_keys import command_public_key
from sm_shared.datadir import DataDir
from sm_shared.pki import ca_fingerprint
from sm_shared.streams import REVOCATIONS_STREAM

GATEWAY_URL = "wss://core.example:8104/agent/ws"
EnrollBody = Callable[..., dict[str, Any]]
Stream = Callable[[str], list[dict[str, str]]]
AuditEvents = Callable[[], list[AuditEvent]]


@pytest.fixture
def settings(settings: RegistrySettings) -> RegistrySettings:
    return settings.model_copy(update={"gateway_url": GATEWAY_URL})


def enrollment_key(data: DataDir) -> str:
    return data.enrollment_key.read_text().strip()


def authenticate(client: TestClient, headers: dict[str, str], credential: str) -> Any:
    return client.post(
        "/api/v1/nodes/authenticate", json={"credential": credential}, headers=headers
    )


def test_enroll_with_the_key(
    client: TestClient,
    data_dir: DataDir,
    viewer: dict[str, str],
    service: dict[str, str],
    enroll_body: EnrollBody,
    audit_events: AuditEvents,
) -> None:
    response = client.post("/api/v1/enroll", json=enroll_body(enrollment_key(data_dir)))
    assert response.status_code == 201, response.text
    enrolled = response.json()
    node_id = enrolled["node_id"]
    assert set(enrolled) == {
        "node_id",
        "credential",
        "command_public_key",
        "gateway_url",
        "heartbeat_interval",
    }
    prefix, credential_node, secret = enrolled["credential"].split(".")
    assert (prefix, credential_node) == ("smn1", node_id)
    assert len(secret) == 43  # 32 random bytes, unpadded base64url
    assert enrolled["command_public_key"] == command_public_key(data_dir)
    assert enrolled["gateway_url"] == GATEWAY_URL
    assert enrolled["heartbeat_interval"] == 5

    # only the SHA-256 of the secret is stored
    with sqlite3.connect(data_dir.database("registry")) as db:
        stored = db.execute(
            "SELECT secret_sha256 FROM node_credentials WHERE node_id = ?", (node_id,)
        ).fetchone()[0]
        dump = "\n".join(db.iterdump())
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in dump

    node = client.get(f"/api/v1/nodes/{node_id}", headers=viewer).json()
    assert (node["name"], node["hostname"], node["machine_id"]) == (
        "web-1",
        "web-1",
        "machine-web-1",
    )
    assert node["duplicate_of"] is None

    who = authenticate(client, service, enrolled["credential"])
    assert who.status_code == 200
    assert who.json() == {"node_id": node_id, "name": "web-1", "group": None, "labels": {}}

    events = audit_events()
    assert [(e.actor, e.action, e.target) for e in events] == [
        (f"node:{node_id}", "node.enroll", f"node:{node_id}")
    ]
    assert events[0].detail["via"] == "enrollment-key"


def test_wrong_keys_and_bad_bodies(
    client: TestClient,
    data_dir: DataDir,
    viewer: dict[str, str],
    enroll_body: EnrollBody,
    facts: dict[str, Any],
) -> None:
    key = enrollment_key(data_dir)
    secret_key = data_dir.secret_key.read_text().strip()
    for wrong in (key[:-4] + "AAAA", secret_key, "nonsense", "smt1.x.y", "smn1.a.b"):
        response = client.post("/api/v1/enroll", json=enroll_body(wrong))
        assert response.status_code == 401, wrong
        assert response.headers["content-type"] == "application/problem+json"
    bad_facts = [
        {**facts, "extra": 1},
        {k: v for k, v in facts.items() if k != "boot_id"},
        {**facts, "cpu_count": 0},
        {**facts, "hostname": ""},
        {**facts, "addresses": [{"interface": "eth0", "address": "10.0.0.1"}]},
        {**facts, "memory_total": "lots"},
    ]
    for bad in bad_facts:
        response = client.post("/api/v1/enroll", json={"key": key, "machine_id": "m", "facts": bad})
        assert response.status_code == 400, bad
    for body in (
        {"key": key, "facts": facts},
        {"key": key, "machine_id": "bad id!", "facts": facts},
        {"key": key, "machine_id": "m", "facts": facts, "role": "admin"},
    ):
        assert client.post("/api/v1/enroll", json=body).status_code == 400, body
    neither = client.post("/api/v1/enroll", json=enroll_body(None))
    assert neither.status_code == 400
    assert "key" in neither.json()["detail"]
    assert client.get("/api/v1/nodes", headers=viewer).json()["total"] == 0


def test_rotated_key_refuses_the_old_one_and_nodes_keep_working(
    client: TestClient, data_dir: DataDir, service: dict[str, str], enroll_body: EnrollBody
) -> None:
    old = enrollment_key(data_dir)
    enrolled = client.post("/api/v1/enroll", json=enroll_body(old)).json()
    new = str(rotate_access_key(data_dir, KeyKind.ENROLLMENT))
    assert client.post("/api/v1/enroll", json=enroll_body(old, "b")).status_code == 401
    assert client.post("/api/v1/enroll", json=enroll_body(new, "b")).status_code == 201
    assert authenticate(client, service, enrolled["credential"]).status_code == 200


def test_failed_attempts_back_off(
    client: TestClient, data_dir: DataDir, enroll_body: EnrollBody, store: redis.Redis
) -> None:
    for _ in range(6):
        assert client.post("/api/v1/enroll", json=enroll_body("sme1.bad.bad")).status_code == 401
    slowed = client.post("/api/v1/enroll", json=enroll_body(enrollment_key(data_dir)))
    assert slowed.status_code == 429
    assert slowed.headers["content-type"] == "application/problem+json"
    assert int(slowed.headers["Retry-After"]) >= 1
    keys = store.keys(f"ratelimit:{BACKOFF_BUCKET}:*")
    assert isinstance(keys, list)
    assert keys
    store.delete(*keys)
    assert (
        client.post("/api/v1/enroll", json=enroll_body(enrollment_key(data_dir))).status_code == 201
    )


def test_reenroll_with_the_credential_keeps_the_id_and_rotates_it(
    client: TestClient,
    data_dir: DataDir,
    admin: dict[str, str],
    service: dict[str, str],
    enroll_body: EnrollBody,
    facts: dict[str, Any],
) -> None:
    first = client.post("/api/v1/enroll", json=enroll_body(enrollment_key(data_dir))).json()
    node_id = first["node_id"]
    client.post("/api/v1/groups", json={"name": "web"}, headers=admin)
    client.patch(
        f"/api/v1/nodes/{node_id}",
        json={"name": "Web One", "labels": {"env": "prod"}, "group": "web"},
        headers=admin,
    )

    # the agent forgot the enrollment key: its credential alone re-enrolls it
    upgraded = {**facts, "agent_version": "0.2.0", "hostname": "web-1b"}
    again = client.post(
        "/api/v1/enroll",
        json={"machine_id": "machine-web-1", "facts": upgraded, "credential": first["credential"]},
    )
    assert again.status_code == 201, again.text
    assert again.json()["node_id"] == node_id
    assert again.json()["credential"] != first["credential"]
    assert authenticate(client, service, first["credential"]).status_code == 401
    who = authenticate(client, service, again.json()["credential"])
    assert who.json() == {
        "node_id": node_id,
        "name": "Web One",
        "group": "web",
        "labels": {"env": "prod"},
    }
    node = client.get(f"/api/v1/nodes/{node_id}", headers=admin).json()
    assert node["facts"]["agent_version"] == "0.2.0"
    assert node["hostname"] == "web-1b"
    assert node["name"] == "Web One"
    assert client.get("/api/v1/nodes", headers=admin).json()["total"] == 1

    # a display name never changed follows the host name
    other = client.post("/api/v1/enroll", json=enroll_body(enrollment_key(data_dir), "db-1")).json()
    moved = client.post(
        "/api/v1/enroll",
        json=enroll_body(None, "db-2", credential=other["credential"]),
    )
    renamed = client.get(f"/api/v1/nodes/{moved.json()['node_id']}", headers=admin).json()
    assert (renamed["name"], renamed["hostname"]) == ("db-2", "db-2")
    client.delete(f"/api/v1/nodes/{other['node_id']}", headers=admin)

    # with the key as well (it must then be valid)
    with_key = client.post(
        "/api/v1/enroll",
        json=enroll_body(enrollment_key(data_dir), credential=again.json()["credential"]),
    )
    assert with_key.status_code == 201
    assert with_key.json()["node_id"] == node_id
    bad_key = client.post(
        "/api/v1/enroll",
        json=enroll_body("sme1.bad.key", credential=with_key.json()["credential"]),
    )
    assert bad_key.status_code == 401

    # a stale or deleted node's credential does not enroll anything
    stale = client.post(
        "/api/v1/enroll", json=enroll_body(enrollment_key(data_dir), credential=first["credential"])
    )
    assert stale.status_code == 401
    client.delete(f"/api/v1/nodes/{node_id}", headers=admin)
    revoked = client.post(
        "/api/v1/enroll",
        json=enroll_body(None, credential=with_key.json()["credential"]),
    )
    assert revoked.status_code == 403
    assert client.get("/api/v1/nodes", headers=admin).json()["total"] == 0


def test_duplicate_machine_id_is_flagged_and_settled_by_an_admin(
    client: TestClient,
    data_dir: DataDir,
    admin: dict[str, str],
    operator: dict[str, str],
    service: dict[str, str],
    enroll_body: EnrollBody,
    stream: Stream,
    audit_events: AuditEvents,
) -> None:
    key = enrollment_key(data_dir)
    original = client.post("/api/v1/enroll", json=enroll_body(key, "web-1")).json()
    client.post("/api/v1/groups", json={"name": "web"}, headers=admin)
    client.patch(
        f"/api/v1/nodes/{original['node_id']}",
        json={"name": "Web One", "labels": {"env": "prod"}, "group": "web"},
        headers=admin,
    )
    # reinstalled: same machine id, no credential
    twin = client.post("/api/v1/enroll", json=enroll_body(key, "web-1")).json()
    assert twin["node_id"] != original["node_id"]
    flagged = client.get(f"/api/v1/nodes/{twin['node_id']}", headers=admin).json()
    assert flagged["duplicate_of"] == original["node_id"]
    assert (flagged["name"], flagged["labels"], flagged["group"]) == ("web-1", {}, None)
    third = client.post("/api/v1/enroll", json=enroll_body(key, "web-1")).json()
    flagged_third = client.get(f"/api/v1/nodes/{third['node_id']}", headers=admin)
    assert flagged_third.json()["duplicate_of"] == original["node_id"]
    other = client.post("/api/v1/enroll", json=enroll_body(key, "db-1")).json()

    url = f"/api/v1/nodes/{twin['node_id']}/duplicate"
    assert client.post(url, json={"decision": "replace"}, headers=operator).status_code == 403
    assert client.post(url, json={"decision": "merge"}, headers=admin).status_code == 400
    not_flagged = client.post(
        f"/api/v1/nodes/{other['node_id']}/duplicate", json={"decision": "replace"}, headers=admin
    )
    assert not_flagged.status_code == 409

    replaced = client.post(url, json={"decision": "replace"}, headers=admin)
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert (body["name"], body["labels"], body["group"], body["duplicate_of"]) == (
        "Web One",
        {"env": "prod"},
        "web",
        None,
    )
    assert client.get(f"/api/v1/nodes/{original['node_id']}", headers=admin).status_code == 404
    assert authenticate(client, service, original["credential"]).status_code == 403
    assert authenticate(client, service, twin["credential"]).json()["name"] == "Web One"
    assert [f["node_id"] for f in stream(REVOCATIONS_STREAM)] == [original["node_id"]]
    # the third enrollment now duplicates the replacement
    assert (
        client.get(f"/api/v1/nodes/{third['node_id']}", headers=admin).json()["duplicate_of"]
        == twin["node_id"]
    )
    distinct = client.post(
        f"/api/v1/nodes/{third['node_id']}/duplicate", json={"decision": "distinct"}, headers=admin
    )
    assert distinct.json()["duplicate_of"] is None
    assert distinct.json()["name"] == "web-1"
    assert client.post(url, json={"decision": "replace"}, headers=admin).status_code == 409

    actions = [e.action for e in audit_events()]
    assert "node.duplicate.replace" in actions
    assert "node.duplicate.distinct" in actions


def test_deleting_the_original_clears_the_flag(
    client: TestClient, data_dir: DataDir, admin: dict[str, str], enroll_body: EnrollBody
) -> None:
    key = enrollment_key(data_dir)
    original = client.post("/api/v1/enroll", json=enroll_body(key)).json()
    twin = client.post("/api/v1/enroll", json=enroll_body(key)).json()
    client.delete(f"/api/v1/nodes/{original['node_id']}", headers=admin)
    node = client.get(f"/api/v1/nodes/{twin['node_id']}", headers=admin).json()
    assert node["duplicate_of"] is None


def test_enrollment_tokens(
    client: TestClient,
    data_dir: DataDir,
    admin: dict[str, str],
    enroll_body: EnrollBody,
    audit_events: AuditEvents,
) -> None:
    client.post("/api/v1/groups", json={"name": "rack-12"}, headers=admin)
    created = client.post(
        "/api/v1/enrollment-tokens",
        json={
            "ttl": 3600,
            "max_uses": 2,
            "group": "rack-12",
            "labels": {"env": "prod"},
            "description": "rollout",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    token = created.json()
    prefix, fingerprint, secret = token["token"].split(".")
    assert prefix == "smt1"
    assert fingerprint == b64url(ca_fingerprint(data_dir.ca_cert.read_bytes()))
    assert len(secret) == 43
    assert (token["state"], token["uses"], token["uses_left"], token["max_uses"]) == (
        "active",
        0,
        2,
        2,
    )
    assert (token["group"], token["labels"], token["created_by"]) == (
        "rack-12",
        {"env": "prod"},
        "admin-user",
    )

    listed = client.get("/api/v1/enrollment-tokens", headers=admin)
    assert listed.status_code == 200
    assert "token" not in listed.json()["items"][0]
    assert secret not in listed.text

    nodes = []
    for hostname in ("a", "b"):
        enrolled = client.post("/api/v1/enroll", json=enroll_body(token["token"], hostname))
        assert enrolled.status_code == 201, enrolled.text
        nodes.append(enrolled.json()["node_id"])
    node = client.get(f"/api/v1/nodes/{nodes[0]}", headers=admin).json()
    assert (node["group"], node["labels"]) == ("rack-12", {"env": "prod"})
    exhausted = client.post("/api/v1/enroll", json=enroll_body(token["token"], "c"))
    assert exhausted.status_code == 401
    assert "exhausted" in exhausted.json()["detail"]
    after = client.get(f"/api/v1/enrollment-tokens/{token['id']}", headers=admin).json()
    assert (after["state"], after["uses"], after["uses_left"]) == ("exhausted", 2, 0)
    assert client.get("/api/v1/nodes", headers=admin).json()["total"] == 2
    events = audit_events()
    assert {e.detail.get("via") for e in events if e.action == "node.enroll"} == {
        f"enrollment-token:{token['id']}"
    }

    # unlimited uses, then expiry (the clock moved past it) and revocation
    unlimited = client.post("/api/v1/enrollment-tokens", json={}, headers=admin).json()
    assert (unlimited["max_uses"], unlimited["uses_left"], unlimited["group"]) == (None, None, None)
    assert (
        client.post("/api/v1/enroll", json=enroll_body(unlimited["token"], "d")).status_code == 201
    )
    with sqlite3.connect(data_dir.database("registry")) as db:
        db.execute(
            "UPDATE enrollment_tokens SET expires_at = ? WHERE id = ?",
            (time.time() - 1, unlimited["id"]),
        )
    expired = client.post("/api/v1/enroll", json=enroll_body(unlimited["token"], "e"))
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    states = {
        t["id"]: t["state"]
        for t in client.get("/api/v1/enrollment-tokens", headers=admin).json()["items"]
    }
    assert states == {token["id"]: "exhausted", unlimited["id"]: "expired"}

    fresh = client.post("/api/v1/enrollment-tokens", json={"ttl": 60}, headers=admin).json()
    revoked = client.post(f"/api/v1/enrollment-tokens/{fresh['id']}/revoke", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    assert revoked.json()["revoked_at"] is not None
    again = client.post(f"/api/v1/enrollment-tokens/{fresh['id']}/revoke", headers=admin)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    refused = client.post("/api/v1/enroll", json=enroll_body(fresh["token"], "f"))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    # nodes a token enrolled keep working after it is spent or revoked
    assert client.get(f"/api/v1/nodes/{nodes[1]}", headers=admin).status_code == 200

    actions = [e.action for e in audit_events()]
    assert actions.count("enrollment_token.create") == 3
    assert actions.count("enrollment_token.revoke") == 2


def test_token_administration_is_for_admins(
    client: TestClient, admin: dict[str, str], operator: dict[str, str]
) -> None:
    assert client.get("/api/v1/enrollment-tokens", headers=operator).status_code == 403
    assert client.post("/api/v1/enrollment-tokens", json={}, headers=operator).status_code == 403
    assert client.get("/api/v1/enrollment-tokens").status_code == 401
    for body in (
        {"ttl": 10},
        {"ttl": 10**9},
        {"max_uses": 0},
        {"labels": {"bad key": "v"}},
        {"group": "-x"},
        {"secret": "mine"},
    ):
        response = client.post("/api/v1/enrollment-tokens", json=body, headers=admin)
        assert response.status_code == 400, body
    no_group = client.post("/api/v1/enrollment-tokens", json={"group": "nope"}, headers=admin)
    assert no_group.status_code == 404
    assert client.get("/api/v1/enrollment-tokens", headers=admin).json() == {"items": []}
    unknown = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/api/v1/enrollment-tokens/{unknown}", headers=admin).status_code == 404
    assert (
        client.post(f"/api/v1/enrollment-tokens/{unknown}/revoke", headers=admin).status_code == 404
    )


def test_authenticate(
    client: TestClient,
    data_dir: DataDir,
    admin: dict[str, str],
    service: dict[str, str],
    enroll_body: EnrollBody,
) -> None:
    enrolled = client.post("/api/v1/enroll", json=enroll_body(enrollment_key(data_dir))).json()
    node_id = enrolled["node_id"]
    _, _, secret = enrolled["credential"].split(".")
    for wrong in (
        f"smn1.{node_id}.{secret[:-2]}xx",
        f"smn1.00000000-0000-4000-8000-000000000000.{secret}",
        f"smx1.{node_id}.{secret}",
        "smn1..",
        "garbage",
    ):
        response = authenticate(client, service, wrong)
        assert response.status_code == 401, wrong
        assert response.headers["content-type"] == "application/problem+json"
    # the service scope is required: even an admin token is refused
    assert authenticate(client, admin, enrolled["credential"]).status_code == 403
    assert client.post("/api/v1/nodes/authenticate", json={}, headers=service).status_code == 400
    assert authenticate(client, service, enrolled["credential"]).status_code == 200

"""``/api/v1/commands`` through the real commands app (response validation on) with a real
registry resolving targets (its own uvicorn, TLS) and the real arq queue in Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from arq.constants import default_queue_name
from starlette.testclient import TestClient

from sm_commands import CommandsSettings, create_app
from sm_commands.actions import dispatch_job_id
from sm_shared.datadir import DataDir
from sm_shared.scopes import BUILTIN_ROLES
from sm_shared.streams import AUDIT_STREAM
from sm_shared.tokens import issue_access_token

PROBLEM = "application/problem+json"
SHELL = {"script": "uname -a", "env": {"TOKEN": "s3cret"}}


def headers(data_dir: DataDir, role: str, subject: str = "alice") -> dict[str, str]:
    token = issue_access_token(
        data_dir, subject=subject, client_id="sm-tests", scopes=BUILTIN_ROLES[role], ttl=300
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def enrolled(registry_api: Any) -> list[str]:
    """Two nodes in group ``web`` (labels env=prod), one without a group."""
    ids = [registry_api.enroll(f"machine-{n}")["node_id"] for n in range(3)]
    admin = {"Authorization": f"Bearer {registry_api.token()}"}
    with registry_api.client() as client:
        assert client.post("/api/v1/groups", json={"name": "web"}, headers=admin).status_code == 201
        response = client.post(
            "/api/v1/nodes/bulk",
            json={"node_ids": ids[:2], "group": "web", "labels": {"set": {"env": "prod"}}},
            headers=admin,
        )
        assert response.status_code == 200, response.text
    return ids


@pytest.fixture
def api(
    data_dir: DataDir, redis_url: str, registry_origin: str, enrolled: list[str]
) -> Iterator[TestClient]:
    settings = CommandsSettings(
        data_dir=data_dir.root,
        redis_url=redis_url,
        validate_responses=True,
        registry_url=registry_origin,
    )
    with create_app(settings).test_client() as client:
        yield client


@pytest.fixture
def operator(data_dir: DataDir) -> dict[str, str]:
    return headers(data_dir, "operator")


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def create(client: TestClient, auth: dict[str, str], **body: Any) -> Any:
    return client.post("/api/v1/commands", json=body, headers=auth)


def test_create_resolves_the_target_queues_executions_and_enqueues_one_job(
    api: TestClient, operator: dict[str, str], enrolled: list[str], redis_url: str
) -> None:
    response = create(
        api, operator, target={"groups": ["web"]}, kind="shell", shell=SHELL, batch="50%"
    )
    assert response.status_code == 202, response.text
    command = response.json()
    assert command["actor"] == "alice"
    assert command["shell"] == {"script": "uname -a", "env": {"TOKEN": "***"}}
    assert command["node_count"] == 2
    assert sorted(e["node_id"] for e in command["executions"]) == sorted(enrolled[:2])
    assert {e["state"] for e in command["executions"]} == {"queued"}
    assert command["summary"]["queued"] == 2
    assert command["status"] == "running"
    assert command["timeout"] == 60
    client = redis.Redis.from_url(redis_url)
    try:
        jobs = client.zrange(default_queue_name, 0, -1)
        assert jobs == [dispatch_job_id(command["id"]).encode()]
        audit = [fields for _, fields in client.xrange(AUDIT_STREAM)]
    finally:
        client.close()
    created = [orjson.loads(f[b"detail"]) for f in audit if f[b"action"] == b"command.create"]
    assert len(created) == 1
    assert created[0]["shell"]["env"] == {"TOKEN": "***"}
    assert b"s3cret" not in b"".join(v for f in audit for v in f.values())
    assert sorted(created[0]["node_ids"]) == sorted(enrolled[:2])

    again = api.get(f"/api/v1/commands/{command['id']}", headers=operator).json()
    assert again["shell"]["env"] == {"TOKEN": "***"}


def test_list_filters_and_pages_newest_first(
    api: TestClient, data_dir: DataDir, operator: dict[str, str], enrolled: list[str]
) -> None:
    bob = headers(data_dir, "operator", subject="bob")
    made = [
        create(api, operator, target={"node_ids": [enrolled[2]]}, kind="shell", shell=SHELL),
        create(api, bob, target={"all": True}, kind="service", service={"action": "list"}),
        create(api, operator, target={"selector": "env=prod"}, kind="logs", logs={"unit": "ssh"}),
    ]
    ids = [r.json()["id"] for r in made]
    assert made[2].json()["logs"] == {"unit": "ssh", "lines": 100, "follow": False}
    viewer = headers(data_dir, "viewer")
    page = api.get("/api/v1/commands?limit=2", headers=viewer).json()
    assert [c["id"] for c in page["items"]] == [ids[2], ids[1]]
    rest = api.get(f"/api/v1/commands?limit=2&cursor={page['next_cursor']}", headers=viewer).json()
    assert [c["id"] for c in rest["items"]] == [ids[0]]
    assert rest["next_cursor"] is None

    def listed(query: str) -> list[str]:
        response = api.get(f"/api/v1/commands?{query}", headers=viewer)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert listed("actor=bob") == [ids[1]]
    assert listed("kind=logs") == [ids[2]]
    assert listed(f"node_id={enrolled[2]}") == [ids[1], ids[0]]
    assert listed("status=running") == ids[::-1]
    assert listed("status=done") == []
    problem(api.get("/api/v1/commands?cursor=bm9wZQ", headers=viewer), 400)


def test_bad_input_is_a_precise_problem(
    api: TestClient, operator: dict[str, str], enrolled: list[str]
) -> None:
    target = {"node_ids": [enrolled[0]]}
    body = problem(create(api, operator, target=target, kind="powershell", shell=SHELL), 400)
    assert "powershell" in body["detail"]
    body = problem(
        create(api, operator, target=target, kind="shell", service={"action": "list"}), 400
    )
    assert body["field"] == "/service"
    for timeout in (-5, 0, 86401, 10**12):
        body = problem(
            create(api, operator, target=target, kind="shell", shell=SHELL, timeout=timeout), 400
        )
        assert "timeout" in body["detail"]
    body = problem(
        create(api, operator, target=target, kind="service", service={"action": "restart"}), 400
    )
    assert "unit" in body["detail"]
    body = problem(
        create(api, operator, target={"selector": "env in (a,"}, kind="shell", shell=SHELL), 400
    )
    assert isinstance(body["position"], int)
    assert body["selector"] == "env in (a,"
    missing = "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10"
    body = problem(
        create(api, operator, target={"node_ids": [missing]}, kind="shell", shell=SHELL), 404
    )
    assert body["unknown_node_ids"] == [missing]
    problem(create(api, operator, target={"groups": ["nope"]}, kind="shell", shell=SHELL), 404)
    body = problem(
        create(api, operator, target={"selector": "env=staging"}, kind="shell", shell=SHELL), 422
    )
    assert body["detail"] == "No node matches the target"
    bad_env = {"script": "x", "env": {"1A": "v"}}
    body = problem(create(api, operator, target=target, kind="shell", shell=bad_env), 400)
    assert "1A" in body["detail"]


def test_a_viewer_cannot_run_an_operator_can(
    api: TestClient, data_dir: DataDir, enrolled: list[str]
) -> None:
    body = {"target": {"all": True}, "kind": "shell", "shell": SHELL}
    viewer = headers(data_dir, "viewer")
    problem(api.post("/api/v1/commands", json=body, headers=viewer), 403)
    assert (
        api.post("/api/v1/commands", json=body, headers=headers(data_dir, "operator")).status_code
        == 202
    )


def test_cancel_and_rerun(
    api: TestClient, operator: dict[str, str], enrolled: list[str], redis_url: str
) -> None:
    command = create(api, operator, target={"all": True}, kind="shell", shell=SHELL).json()
    first = command["executions"][0]["id"]
    url = f"/api/v1/commands/{command['id']}"
    one = api.post(f"{url}/executions/{first}/cancel", headers=operator)
    assert one.status_code == 202, one.text
    assert one.json()["state"] == "cancelled"
    problem(api.post(f"{url}/executions/{first}/cancel", headers=operator), 409)
    cancelled = api.post(f"{url}/cancel", headers=operator)
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["summary"]["cancelled"] == 3
    problem(api.post(f"{url}/cancel", headers=operator), 409)
    client = redis.Redis.from_url(redis_url)
    try:
        actions = [f[b"action"] for _, f in client.xrange(AUDIT_STREAM)]
    finally:
        client.close()
    assert actions.count(b"command.cancel") == 1
    assert actions.count(b"execution.cancel") == 1
    assert actions.count(b"execution.finish") == 3

    rerun = api.post(f"{url}/rerun", json={"nodes": "failed"}, headers=operator)
    assert rerun.status_code == 202, rerun.text
    again = rerun.json()
    assert again["rerun_of"] == command["id"]
    assert again["node_count"] == 3
    assert again["shell"] == command["shell"]
    plain = api.post(f"/api/v1/commands/{again['id']}/rerun", json={}, headers=operator)
    assert plain.status_code == 202, plain.text
    problem(
        api.post(
            f"/api/v1/commands/{again['id']}/rerun", json={"nodes": "failed"}, headers=operator
        ),
        422,
    )
    problem(api.get("/api/v1/commands/c_missing", headers=operator), 404)
    problem(api.post("/api/v1/commands/c_missing/cancel", headers=operator), 404)

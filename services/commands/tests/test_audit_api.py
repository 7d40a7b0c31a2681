"""``GET /api/v1/audit`` and ``/api/v1/audit/verify`` through the real commands app
(response validation on), on a chain appended to its real SQLite file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from sm_commands import CommandsSettings, audit_chain, create_app
from sm_commands.audit_schema import audit_records
from sm_shared.audit import AuditEvent
from sm_shared.database import create_database_engine
from sm_shared.datadir import DataDir
from sm_shared.scopes import AUDIT_READ, BUILTIN_ROLES
from sm_shared.tokens import issue_access_token

PROBLEM = "application/problem+json"
T0 = 1_764_345_600.0


@pytest.fixture
def settings(data_dir: DataDir, redis_url: str) -> CommandsSettings:
    return CommandsSettings(data_dir=data_dir.root, redis_url=redis_url, validate_responses=True)


@pytest.fixture
def client(settings: CommandsSettings) -> Iterator[TestClient]:
    with create_app(settings).test_client() as test_client:
        yield test_client


def headers(data_dir: DataDir, *scopes: str) -> dict[str, str]:
    token = issue_access_token(
        data_dir, subject="auditor", client_id="sm-tests", scopes=scopes, ttl=300
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auditor(data_dir: DataDir) -> dict[str, str]:
    return headers(data_dir, AUDIT_READ)


def seed(settings: CommandsSettings, count: int) -> None:
    """``count`` records: actors alice/bob alternating, at T0 + n, targets node:n<n>."""
    engine = create_database_engine(settings.database_url)
    try:
        entries = [
            (
                f"{n}-0",
                AuditEvent(
                    actor="alice" if n % 2 else "bob",
                    action="command.create" if n % 3 == 0 else "node.update",
                    target=f"node:n{n}",
                    service="commands",
                    detail={"n": n, "env": {"TOKEN": "***"}},
                    at=T0 + n,
                ),
            )
            for n in range(1, count + 1)
        ]
        audit_chain.append(engine, entries)
    finally:
        engine.dispose()


def listing(client: TestClient, auth: dict[str, str], **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/audit", params=params, headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_list_is_newest_first_and_pages_with_the_cursor(
    client: TestClient, settings: CommandsSettings, auditor: dict[str, str]
) -> None:
    seed(settings, 12)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = listing(client, auditor, **params)
        seen += [record["seq"] for record in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(12, 0, -1))
    assert pages == 3
    record = listing(client, auditor, limit=1)["items"][0]
    assert record["at"] == T0 + 12
    assert record["detail"] == {"n": 12, "env": {"TOKEN": "***"}}
    # What the API shows is what was hashed: a verifier needs nothing else.
    content = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == record["hash"]


def test_list_filters_combine(
    client: TestClient, settings: CommandsSettings, auditor: dict[str, str]
) -> None:
    seed(settings, 12)

    def seqs(**params: Any) -> list[int]:
        return [r["seq"] for r in listing(client, auditor, **params)["items"]]

    assert seqs(actor="alice") == [11, 9, 7, 5, 3, 1]
    assert seqs(action="command.create") == [12, 9, 6, 3]
    assert seqs(action="command.create", actor="alice") == [9, 3]
    assert seqs(target="node:n4") == [4]
    assert seqs(since=T0 + 10) == [12, 11, 10]
    assert seqs(since=T0 + 3, until=T0 + 5) == [4, 3]  # until is exclusive
    assert seqs(actor="nobody") == []
    filtered = listing(client, auditor, actor="alice", limit=4)
    assert [r["seq"] for r in filtered["items"]] == [11, 9, 7, 5]
    rest = listing(client, auditor, actor="alice", limit=4, cursor=filtered["next_cursor"])
    assert [r["seq"] for r in rest["items"]] == [3, 1]
    assert rest["next_cursor"] is None


def test_bad_parameters_are_problems(client: TestClient, auditor: dict[str, str]) -> None:
    for params in (
        {"limit": 0},
        {"limit": 501},
        {"cursor": "not-a-seq"},
        {"since": T0 + 5, "until": T0},
        {"since": -1},
    ):
        response = client.get("/api/v1/audit", params=params, headers=auditor)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["detail"]


def test_verify_says_ok_then_names_an_edited_record(
    client: TestClient, settings: CommandsSettings, auditor: dict[str, str]
) -> None:
    empty = client.get("/api/v1/audit/verify", headers=auditor)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"ok": True, "records": 0, "head": None}
    seed(settings, 6)
    verdict = client.get("/api/v1/audit/verify", headers=auditor).json()
    assert verdict["ok"] is True
    assert verdict["records"] == 6
    assert verdict["head"] == listing(client, auditor, limit=1)["items"][0]["hash"]
    engine = create_database_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(audit_records).where(audit_records.c.seq == 4).values(target="node:other")
            )
    finally:
        engine.dispose()
    verdict = client.get("/api/v1/audit/verify", headers=auditor).json()
    assert verdict["ok"] is False
    assert verdict["records"] == 3
    assert verdict["first_bad"]["seq"] == 4
    assert verdict["first_bad"]["reason"]


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
def test_audit_read_is_required(client: TestClient, data_dir: DataDir, path: str) -> None:
    assert client.get(path).status_code == 401
    viewer = headers(data_dir, *BUILTIN_ROLES["viewer"])  # no audit:read
    refused = client.get(path, headers=viewer)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == PROBLEM
    assert client.get(path, headers=headers(data_dir, AUDIT_READ)).status_code == 200

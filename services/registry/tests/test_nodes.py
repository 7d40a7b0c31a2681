"""Nodes through the registry's API: list, filter, sort, page, update, bulk update, delete."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from sm_registry import nodes
from sm_registry.labels import Operator, Requirement, Selector
from sm_shared.audit import AuditEvent
from sm_shared.datadir import DataDir
from sm_shared.scopes import BUILTIN_ROLES
from sm_shared.streams import LAST_SEEN_HASH, REVOCATIONS_STREAM, presence_key
from sm_shared.tokens import issue_access_token

Enroll = Callable[..., dict[str, Any]]


def test_enroll_list_label_group_filter_resolve_delete(
    client: TestClient,
    data_dir: DataDir,
    service: dict[str, str],
    enroll: Enroll,
    facts: dict[str, Any],
    stream: Callable[[str], list[dict[str, str]]],
    audit_events: Callable[[], list[AuditEvent]],
) -> None:
    token = issue_access_token(
        data_dir, subject="alice", client_id="tests", scopes=BUILTIN_ROLES["admin"], ttl=600
    )
    admin = {"Authorization": f"Bearer {token}"}
    web1 = enroll("web-1")
    web2 = enroll("web-2")
    db1 = enroll("db-1")

    listed = client.get("/api/v1/nodes", headers=admin).json()
    assert listed["total"] == 3
    assert [n["name"] for n in listed["items"]] == ["db-1", "web-1", "web-2"]
    first = listed["items"][1]
    assert first["id"] == web1["node_id"]
    assert first["facts"] == {**facts, "hostname": "web-1"}
    assert first["status"] == "offline"
    assert first["last_seen"] is None
    assert first["group"] is None
    assert first["labels"] == {}

    # label one node, group two
    assert client.post("/api/v1/groups", json={"name": "web"}, headers=admin).status_code == 201
    changed = client.patch(
        f"/api/v1/nodes/{web1['node_id']}",
        json={"labels": {"env": "prod", "tier": "web"}, "group": "web", "name": "Web One"},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["labels"] == {"env": "prod", "tier": "web"}
    assert changed.json()["group"] == "web"
    assert changed.json()["name"] == "Web One"
    bulk = client.post(
        "/api/v1/nodes/bulk",
        json={
            "node_ids": [web2["node_id"], db1["node_id"]],
            "labels": {"set": {"env": "staging"}},
        },
        headers=admin,
    )
    assert bulk.status_code == 200, bulk.text
    assert bulk.json() == {"node_ids": sorted([web2["node_id"], db1["node_id"]]), "count": 2}
    client.patch(f"/api/v1/nodes/{web2['node_id']}", json={"group": "web"}, headers=admin)

    def names(params: dict[str, str]) -> list[str]:
        response = client.get("/api/v1/nodes", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [n["hostname"] for n in response.json()["items"]]

    assert names({"selector": "env=prod"}) == ["web-1"]
    assert names({"selector": "env in (prod,staging),!tier"}) == ["db-1", "web-2"]
    assert names({"selector": "env!=prod"}) == ["db-1", "web-2"]
    assert names({"group": "web"}) == ["web-1", "web-2"]
    assert names({"group": "web", "selector": "env=staging"}) == ["web-2"]
    assert names({"q": "WEB"}) == ["web-1", "web-2"]
    assert names({"q": "one"}) == ["web-1"]  # the display name matches too

    resolved = client.post(
        "/api/v1/nodes/resolve", json={"selector": "env=staging", "groups": ["web"]}, headers=admin
    ).json()
    assert resolved == {
        "node_ids": sorted([web1["node_id"], web2["node_id"], db1["node_id"]]),
        "count": 3,
    }

    # delete: the credential stops working at once, and the gateways are told
    check = {"credential": web1["credential"]}
    assert client.post("/api/v1/nodes/authenticate", json=check, headers=service).status_code == 200
    assert client.delete(f"/api/v1/nodes/{web1['node_id']}", headers=admin).status_code == 204
    refused = client.post("/api/v1/nodes/authenticate", json=check, headers=service)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert client.get(f"/api/v1/nodes/{web1['node_id']}", headers=admin).status_code == 404
    assert client.delete(f"/api/v1/nodes/{web1['node_id']}", headers=admin).status_code == 404
    revocations = stream(REVOCATIONS_STREAM)
    assert [fields["node_id"] for fields in revocations] == [web1["node_id"]]
    assert client.get("/api/v1/nodes", headers=admin).json()["total"] == 2
    assert client.get("/api/v1/groups/web", headers=admin).json()["node_count"] == 1

    events = audit_events()
    actions = [(e.actor, e.action, e.target) for e in events]
    assert ("alice", "node.update", f"node:{web1['node_id']}") in actions
    assert ("alice", "node.bulk_update", "nodes") in actions
    assert ("alice", "group.create", "group:web") in actions
    assert ("alice", "node.delete", f"node:{web1['node_id']}") in actions
    assert (f"node:{db1['node_id']}", "node.enroll", f"node:{db1['node_id']}") in actions
    assert all(e.service == "registry" for e in events)


def test_pagination_and_sorting(client: TestClient, viewer: dict[str, str], enroll: Enroll) -> None:
    hostnames = [f"host-{i:02d}" for i in range(23)]
    shuffled = hostnames[:]
    random.Random(7).shuffle(shuffled)
    created = [enroll(hostname)["node_id"] for hostname in shuffled]

    pages: list[str] = []
    for offset in (0, 10, 20):
        page = client.get(
            "/api/v1/nodes", params={"limit": 10, "offset": offset}, headers=viewer
        ).json()
        assert page["total"] == 23
        assert (page["limit"], page["offset"]) == (10, offset)
        pages += [n["hostname"] for n in page["items"]]
    assert pages == hostnames

    desc = client.get(
        "/api/v1/nodes", params={"sort": "hostname", "order": "desc", "limit": 5}, headers=viewer
    ).json()
    assert [n["hostname"] for n in desc["items"]] == hostnames[::-1][:5]
    by_created = client.get(
        "/api/v1/nodes", params={"sort": "created", "limit": 1000}, headers=viewer
    ).json()
    assert [n["id"] for n in by_created["items"]] == created
    beyond = client.get("/api/v1/nodes", params={"offset": 100}, headers=viewer).json()
    assert beyond == {"items": [], "total": 23, "limit": 100, "offset": 100}

    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"sort": "cpu"}, {"order": "up"}):
        response = client.get("/api/v1/nodes", params=bad, headers=viewer)
        assert response.status_code == 400, bad
        assert response.headers["content-type"] == "application/problem+json"


def test_deep_pages_equal_shallow_ones(
    client: TestClient, operator: dict[str, str], enroll: Enroll, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deep offsets find the page on the sort index first; the pages must not change."""
    ids = [enroll(f"h{i % 4}-{i:02d}")["node_id"] for i in range(14)]
    client.post(
        "/api/v1/nodes/bulk",
        json={"node_ids": ids[::2], "labels": {"set": {"even": ""}}},
        headers=operator,
    )
    queries: list[dict[str, Any]] = [
        {"sort": sort, "order": order, "limit": limit, "offset": offset}
        for sort in ("name", "hostname", "created")
        for order in ("asc", "desc")
        for limit, offset in ((3, 0), (3, 4), (5, 10), (4, 13), (2, 20))
    ]
    queries += [{**q, "selector": "even", "q": "h1"} for q in queries[:10]]

    def pages() -> list[Any]:
        return [client.get("/api/v1/nodes", params=q, headers=operator).json() for q in queries]

    shallow = pages()
    monkeypatch.setattr(nodes, "DEEP_OFFSET", 0)
    assert pages() == shallow
    assert any(page["items"] for page in shallow[1:])


def test_status_and_last_seen_come_from_presence(
    client: TestClient, viewer: dict[str, str], enroll: Enroll, store: redis.Redis
) -> None:
    a = enroll("a")["node_id"]
    b = enroll("b")["node_id"]
    c = enroll("c")["node_id"]
    now = time.time()
    store.set(
        presence_key(b),
        orjson.dumps({"gateway": "gw-1", "connected_at": now - 60, "last_seen": now}),
        ex=15,
    )
    store.hset(LAST_SEEN_HASH, mapping={b: str(now - 5), c: str(now - 3600)})

    nodes = {n["hostname"]: n for n in client.get("/api/v1/nodes", headers=viewer).json()["items"]}
    assert nodes["b"]["status"] == "online"
    assert nodes["a"]["status"] == nodes["c"]["status"] == "offline"
    assert nodes["a"]["last_seen"] is None
    assert nodes["b"]["last_seen"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(now)))
    assert nodes["c"]["last_seen"] is not None
    assert client.get(f"/api/v1/nodes/{b}", headers=viewer).json()["status"] == "online"

    online = client.get("/api/v1/nodes", params={"status": "online"}, headers=viewer).json()
    assert ([n["id"] for n in online["items"]], online["total"]) == ([b], 1)
    offline = client.get("/api/v1/nodes", params={"status": "offline"}, headers=viewer).json()
    assert ([n["id"] for n in offline["items"]], offline["total"]) == ([a, c], 2)

    recent_first = client.get(
        "/api/v1/nodes", params={"sort": "last_seen", "order": "desc"}, headers=viewer
    ).json()
    assert [n["id"] for n in recent_first["items"]] == [b, c, a]
    oldest_first = client.get(
        "/api/v1/nodes", params={"sort": "last_seen", "limit": 2, "offset": 1}, headers=viewer
    ).json()
    assert [n["id"] for n in oldest_first["items"]] == [c, b]
    assert oldest_first["total"] == 3

    store.delete(presence_key(b))  # expiry: offline at once, last seen kept
    gone = client.get(f"/api/v1/nodes/{b}", headers=viewer).json()
    assert gone["status"] == "offline"
    assert gone["last_seen"] is not None


def test_update_validates_and_never_writes_half(
    client: TestClient, operator: dict[str, str], enroll: Enroll
) -> None:
    node = enroll("n1")["node_id"]
    url = f"/api/v1/nodes/{node}"

    bad_key = client.patch(url, json={"labels": {"bad key": "v"}, "name": "x"}, headers=operator)
    assert bad_key.status_code == 400
    assert bad_key.json()["label"] == "bad key"
    unknown_group = client.patch(url, json={"name": "renamed", "group": "nope"}, headers=operator)
    assert unknown_group.status_code == 404
    assert unknown_group.json()["group"] == "nope"
    after = client.get(url, headers=operator).json()
    assert (after["name"], after["labels"], after["group"]) == ("n1", {}, None)

    for body in (
        {},
        {"labels": {"env": "-x"}},
        {"name": ""},
        {"name": "   "},
        {"unknown": 1},
        {"group": "bad name!"},
        {"labels": {f"k{i}": "v" for i in range(65)}},
    ):
        response = client.patch(url, json=body, headers=operator)
        assert response.status_code == 400, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"

    assert (
        client.patch(
            url, content=b"{not json", headers={**operator, "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        client.patch(
            url, content=b"\xff\xfe", headers={**operator, "Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert client.get("/api/v1/nodes/not-a-uuid", headers=operator).status_code == 400
    missing = client.patch(
        "/api/v1/nodes/00000000-0000-4000-8000-000000000000", json={"name": "x"}, headers=operator
    )
    assert missing.status_code == 404

    client.post("/api/v1/groups", json={"name": "g"}, headers=operator)
    assert client.patch(url, json={"group": "g"}, headers=operator).json()["group"] == "g"
    assert client.patch(url, json={"group": None}, headers=operator).json()["group"] is None
    replaced = client.patch(url, json={"labels": {"a": "1"}}, headers=operator)
    assert replaced.json()["labels"] == {"a": "1"}
    assert client.patch(url, json={"labels": {"b": ""}}, headers=operator).json()["labels"] == {
        "b": ""
    }


def test_bulk_update_is_all_or_nothing(
    client: TestClient, operator: dict[str, str], enroll: Enroll
) -> None:
    ids = [enroll(f"n{i}")["node_id"] for i in range(3)]
    client.patch(
        f"/api/v1/nodes/{ids[0]}", json={"labels": {"keep": "1", "drop": "x"}}, headers=operator
    )
    unknown = "00000000-0000-4000-8000-000000000000"

    missing = client.post(
        "/api/v1/nodes/bulk",
        json={"node_ids": [*ids, unknown], "labels": {"set": {"env": "prod"}}},
        headers=operator,
    )
    assert missing.status_code == 404
    assert missing.json()["unknown_node_ids"] == [unknown]
    assert all(
        client.get(f"/api/v1/nodes/{i}", headers=operator).json()["labels"].get("env") is None
        for i in ids
    )

    both = client.post(
        "/api/v1/nodes/bulk",
        json={"node_ids": ids, "labels": {"set": {"a": "1"}, "remove": ["a"]}},
        headers=operator,
    )
    assert both.status_code == 400
    assert both.json()["labels"] == ["a"]
    no_group = client.post(
        "/api/v1/nodes/bulk",
        json={"node_ids": ids, "labels": {"set": {"a": "1"}}, "group": "nope"},
        headers=operator,
    )
    assert no_group.status_code == 404
    assert client.get(f"/api/v1/nodes/{ids[1]}", headers=operator).json()["labels"] == {}

    crowded = {f"k{i}": "v" for i in range(63)}
    client.patch(f"/api/v1/nodes/{ids[2]}", json={"labels": crowded}, headers=operator)
    over = client.post(
        "/api/v1/nodes/bulk",
        json={"node_ids": ids, "labels": {"set": {"x": "1", "y": "2"}}},
        headers=operator,
    )
    assert over.status_code == 400
    assert over.json()["node_ids"] == [ids[2]]
    client.patch(f"/api/v1/nodes/{ids[2]}", json={"labels": {}}, headers=operator)

    for body in (
        {"node_ids": ids},
        {"node_ids": [], "labels": {"set": {"a": "b"}}},
        {"node_ids": ids, "labels": {}},
        {"node_ids": [ids[0], ids[0]], "group": None},
        {"node_ids": ids, "labels": {"remove": ["bad key"]}},
        {"node_ids": ["nope"], "group": None},
    ):
        response = client.post("/api/v1/nodes/bulk", json=body, headers=operator)
        assert response.status_code == 400, (body, response.text)

    client.post("/api/v1/groups", json={"name": "g"}, headers=operator)
    done = client.post(
        "/api/v1/nodes/bulk",
        json={
            "node_ids": ids,
            "labels": {"set": {"env": "prod"}, "remove": ["drop"]},
            "group": "g",
        },
        headers=operator,
    )
    assert done.status_code == 200, done.text
    first = client.get(f"/api/v1/nodes/{ids[0]}", headers=operator).json()
    assert first["labels"] == {"keep": "1", "env": "prod"}
    assert first["group"] == "g"
    selected = client.get("/api/v1/nodes", params={"selector": "env=prod,!drop"}, headers=operator)
    assert selected.json()["total"] == 3
    ungrouped = client.post(
        "/api/v1/nodes/bulk", json={"node_ids": ids[:1], "group": None}, headers=operator
    )
    assert ungrouped.status_code == 200
    assert client.get("/api/v1/groups/g", headers=operator).json()["node_count"] == 2


def test_selectors_in_sql_agree_with_the_matcher(
    client: TestClient, operator: dict[str, str], enroll: Enroll
) -> None:
    """Property: for random labels and selectors, the listed nodes = the matcher's choice."""
    rng = random.Random(11)
    keys = ("env", "tier", "example.com/zone")
    values = ("a", "b", "")
    labels: dict[str, dict[str, str]] = {}
    for i in range(24):
        node = enroll(f"n{i:02d}")["node_id"]
        chosen = {k: rng.choice(values) for k in keys if rng.random() < 0.6}
        client.patch(f"/api/v1/nodes/{node}", json={"labels": chosen}, headers=operator)
        labels[node] = chosen
    for _ in range(60):
        requirements = []
        for _ in range(rng.randint(1, 3)):
            op = rng.choice(list(Operator))
            key = rng.choice(keys)
            if op in (Operator.EQUALS, Operator.NOT_EQUALS):
                requirements.append(Requirement(key, op, (rng.choice(values),)))
            elif op in (Operator.IN, Operator.NOT_IN):
                requirements.append(
                    Requirement(key, op, tuple(sorted(set(rng.choices(values[:2], k=2)))))
                )
            else:
                requirements.append(Requirement(key, op))
        selector = Selector(tuple(requirements))
        expected = sorted(
            node for node, node_labels in labels.items() if selector.matches(node_labels)
        )
        listed = client.get(
            "/api/v1/nodes", params={"selector": str(selector), "limit": 1000}, headers=operator
        ).json()
        assert sorted(n["id"] for n in listed["items"]) == expected, str(selector)
        assert listed["total"] == len(expected)
        resolved = client.post(
            "/api/v1/nodes/resolve", json={"selector": str(selector)}, headers=operator
        )
        assert resolved.json()["node_ids"] == expected


def test_bad_filters_are_precise_problems(client: TestClient, viewer: dict[str, str]) -> None:
    bad = client.get("/api/v1/nodes", params={"selector": "env=prod,,x"}, headers=viewer)
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["position"] == 9
    assert bad.json()["pointer"] == "env=prod,,x\n         ^"
    group = client.get("/api/v1/nodes", params={"group": "nope"}, headers=viewer)
    assert group.status_code == 404
    assert group.json()["group"] == "nope"
    assert client.get("/api/v1/nodes", params={"status": "busy"}, headers=viewer).status_code == 400
    assert client.get("/api/v1/nodes", params={"q": "100%_x"}, headers=viewer).json()["total"] == 0


def test_viewer_cannot_write_and_tokens_are_required(
    client: TestClient, viewer: dict[str, str], enroll: Enroll
) -> None:
    node = enroll("n1")["node_id"]
    writes = [
        ("patch", f"/api/v1/nodes/{node}", {"name": "x"}),
        ("delete", f"/api/v1/nodes/{node}", None),
        ("post", "/api/v1/nodes/bulk", {"node_ids": [node], "group": None}),
        ("post", f"/api/v1/nodes/{node}/duplicate", {"decision": "distinct"}),
        ("post", "/api/v1/nodes/authenticate", {"credential": "smn1.x.y"}),
    ]
    for method, url, body in writes:
        response = client.request(method.upper(), url, json=body, headers=viewer)
        assert response.status_code == 403, (method, url, response.text)
        anonymous = client.request(method.upper(), url, json=body)
        assert anonymous.status_code == 401, (method, url)
    assert client.get(f"/api/v1/nodes/{node}", headers=viewer).json()["name"] == "n1"
    assert client.get("/api/v1/nodes").status_code == 401
    assert client.get("/api/v1/nodes", headers={"Authorization": "Bearer nope"}).status_code == 401

"""Bad input gets a precise problem+json, never a 500, and never a partial write.

Generic part, computed from the documents: every operation with a JSON body
gets malformed JSON, a non-UTF-8 body, a JSON array, an empty body, a
wrong-typed member (each member in turn), an unknown member and an oversized
body; every operation addressing a resource by id gets ids that do not exist.
Each answer must be the documented problem (status, title, detail naming the
culprit where there is one). Per service: unknown routes and methods, unknown
query parameters, invalid and oversized Content-Length.

Registry part: refused writes change nothing (bulk updates with one unknown
id, an unknown group or contradictory label changes; a node update with a bad
label key or an unknown group; deleting a group that has nodes) and emit no
audit event; selector syntax errors point at the offending position.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
import yaml
from starlette.testclient import TestClient

from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.settings import CoreSettings
from sm_shared.streams import AUDIT_STREAM
from sm_shared.tokens import issue_access_token
from tests.conftest import (
    CONNEXION_SERVICES,
    EVERY_SCOPE,
    OPENAPI,
    Operation,
    assert_problem,
    build_app,
    example_of,
)

MAX_BODY = CoreSettings.model_fields["max_body_bytes"].default
WRONG_VALUE: dict[str, Any] = {
    "string": 12345,
    "integer": "not-a-number",
    "number": "not-a-number",
    "boolean": "not-a-boolean",
    "array": "not-an-array",
    "object": "not-an-object",
}


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_apps(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str
) -> Iterator[tuple[DataDir, str, dict[str, TestClient]]]:
    """One set of apps for the generic checks (they must write nothing); Redis db 7."""
    data = DataDir(tmp_path_factory.mktemp("bad-input") / "data")
    initialize(data)
    url = f"{redis_server}/7"
    opened: dict[str, TestClient] = {}
    try:
        for service in CONNEXION_SERVICES:
            opened[service] = build_app(service, data, url).test_client().__enter__()
        yield data, url, opened
    finally:
        for client in opened.values():
            client.__exit__(None, None, None)


@pytest.fixture
def apps(
    shared_apps: tuple[DataDir, str, dict[str, TestClient]],
) -> tuple[DataDir, dict[str, TestClient]]:
    data, url, clients = shared_apps
    # Failed enrollments and token requests back off per address: start each test afresh.
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return data, clients


def admin(data: DataDir) -> dict[str, str]:
    token = issue_access_token(
        data, subject="tester", client_id="sm-tests", scopes=EVERY_SCOPE, ttl=300
    )
    return {"Authorization": f"Bearer {token}"}


def send(
    client: TestClient,
    operation: Operation,
    content: bytes,
    headers: dict[str, str],
    content_type: str = "application/json",
) -> Any:
    return client.request(
        operation.method.upper(),
        operation.url(),
        content=content,
        headers={**headers, "Content-Type": content_type},
    )


def example_value(operation: Operation) -> Any:
    body = operation.body_example()
    assert body is not None
    return orjson.loads(body[1])


def body_schema(operation: Operation) -> dict[str, Any]:
    request_body = operation.request_body
    assert request_body is not None
    schema: dict[str, Any] = request_body[1].get("schema", {})
    return schema


# --- every JSON body ----------------------------------------------------------------


def test_malformed_json_is_400(
    apps: tuple[DataDir, dict[str, TestClient]], json_body_operation: Operation
) -> None:
    data, clients = apps
    client = clients[json_body_operation.service]
    for content in (b"{", b'{"a": }', b"{'single': 'quotes'}", b"nul", b'{"a": 1}}'):
        assert_problem(send(client, json_body_operation, content, admin(data)), 400)


def test_non_utf8_body_is_400(
    apps: tuple[DataDir, dict[str, TestClient]], json_body_operation: Operation
) -> None:
    data, clients = apps
    client = clients[json_body_operation.service]
    for content in (b"\xff\xfe\xfd", b'{"name": "caf\xe9"}'):
        body = assert_problem(send(client, json_body_operation, content, admin(data)), 400)
        assert "UTF-8" in body["detail"]


def test_array_and_empty_bodies_are_400(
    apps: tuple[DataDir, dict[str, TestClient]], json_body_operation: Operation
) -> None:
    data, clients = apps
    client = clients[json_body_operation.service]
    for content in (b"[]", b"[{}]", b"null", b'"text"', b"42", b""):
        assert_problem(send(client, json_body_operation, content, admin(data)), 400)


def test_wrong_types_are_400_naming_the_member(
    apps: tuple[DataDir, dict[str, TestClient]], json_body_operation: Operation
) -> None:
    data, clients = apps
    client = clients[json_body_operation.service]
    schema = body_schema(json_body_operation)
    example = example_value(json_body_operation)
    tried = 0
    for name, member in schema.get("properties", {}).items():
        kind = member.get("type")
        if kind not in WRONG_VALUE:
            continue
        value = copy.deepcopy(example) if isinstance(example, dict) else {}
        value[name] = WRONG_VALUE[kind]
        # Members the wrong one depends on (e.g. minProperties) stay as in the example.
        response = send(client, json_body_operation, orjson.dumps(value), admin(data))
        body = assert_problem(response, 400)
        assert name in body["detail"], (name, body)
        tried += 1
    if not tried:
        pytest.skip("no typed member to get wrong")


def test_unknown_member_is_400_naming_it(
    apps: tuple[DataDir, dict[str, TestClient]], json_body_operation: Operation
) -> None:
    data, clients = apps
    client = clients[json_body_operation.service]
    schema = body_schema(json_body_operation)
    # House rule: every request body schema refuses unknown members.
    assert schema.get("additionalProperties") is False, json_body_operation.label
    value = example_value(json_body_operation)
    value["surely_not_a_member"] = 1
    body = assert_problem(send(client, json_body_operation, orjson.dumps(value), admin(data)), 400)
    assert "surely_not_a_member" in body["detail"]


def test_oversized_body_is_413(
    apps: tuple[DataDir, dict[str, TestClient]], json_body_operation: Operation
) -> None:
    data, clients = apps
    client = clients[json_body_operation.service]
    value = example_value(json_body_operation)
    value["padding"] = "x" * MAX_BODY
    for headers in (admin(data), {}):  # refused before authentication too
        body = assert_problem(send(client, json_body_operation, orjson.dumps(value), headers), 413)
        assert str(MAX_BODY) in body["detail"]


def test_example_bodies_are_valid(json_body_operation: Operation) -> None:
    """The documents' examples match their schemas (the tests above start from them)."""
    import jsonschema  # type: ignore[import-untyped]

    schema = body_schema(json_body_operation)
    document = yaml.safe_load((OPENAPI / f"{json_body_operation.service}.yaml").read_text())
    validator = jsonschema.Draft4Validator(
        {**schema, "components": document.get("components", {})},
        format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER,
    )
    errors = [e.message for e in validator.iter_errors(example_value(json_body_operation))]
    assert errors == []


# --- unknown ids ----------------------------------------------------------------------


def id_operations() -> list[Operation]:
    from tests.conftest import all_operations

    return [
        op
        for op in all_operations()
        if op.secured and any(p.get("in") == "path" for p in op.parameters)
    ]


@pytest.mark.parametrize("operation", id_operations(), ids=lambda op: op.label)
def test_unknown_ids_are_404_problems(
    apps: tuple[DataDir, dict[str, TestClient]], operation: Operation
) -> None:
    data, clients = apps
    response = operation.call(clients[operation.service], admin(data))
    body = assert_problem(response, 404)
    # The detail names what was not found.
    values = [
        str(p.get("example") or example_of(p.get("schema", {})))
        for p in operation.parameters
        if p.get("in") == "path"
    ]
    assert any(v in body["detail"] for v in values), body


# --- per service --------------------------------------------------------------------------


@pytest.mark.parametrize("service", CONNEXION_SERVICES)
def test_service_level_bad_requests(
    apps: tuple[DataDir, dict[str, TestClient]], service: str
) -> None:
    data, clients = apps
    client = clients[service]
    assert_problem(client.get("/no/such/route"), 404)
    assert_problem(client.delete("/healthz"), 405)
    assert_problem(client.get("/healthz", params={"unexpected": "1"}), 400)
    assert_problem(client.get("/healthz", headers={"Content-Length": "many"}), 400)
    assert_problem(client.post("/healthz", content=b"x" * (MAX_BODY + 1)), 413)
    assert_problem(client.post("/no/such/route", content=b"\xff\xfe", headers=admin(data)), 404)


# --- registry: refused writes change nothing --------------------------------------------------


def registry_declares(*paths: str) -> bool:
    declared = yaml.safe_load((OPENAPI / "registry.yaml").read_text()).get("paths", {})
    return all(path in declared for path in paths)


needs_nodes = pytest.mark.skipif(
    not registry_declares("/api/v1/enroll", "/api/v1/nodes/bulk", "/api/v1/groups"),
    reason="the registry's node operations are not in the contract yet",
)


@pytest.fixture
def registry(data_dir: DataDir, redis_url: str) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with build_app("registry", data_dir, redis_url).test_client() as client:
        yield client, admin(data_dir)


def enroll(client: TestClient, data: DataDir, n: int) -> str:
    document = yaml.safe_load((OPENAPI / "registry.yaml").read_text())
    facts = document["paths"]["/api/v1/enroll"]["post"]["requestBody"]["content"][
        "application/json"
    ]["example"]["facts"]
    response = client.post(
        "/api/v1/enroll",
        json={
            "key": str(load_key(data, KeyKind.ENROLLMENT)),
            "machine_id": f"{n:032x}",
            "facts": {**facts, "hostname": f"bad-input-{n}"},
        },
    )
    assert response.status_code == 201, response.text
    node_id: str = response.json()["node_id"]
    return node_id


@pytest.fixture
def fleet(
    registry: tuple[TestClient, dict[str, str]], data_dir: DataDir, redis_url: str
) -> tuple[TestClient, dict[str, str], list[str]]:
    """Two nodes labelled env=prod in group web, then a mark in the audit stream."""
    client, headers = registry
    assert client.post("/api/v1/groups", json={"name": "web"}, headers=headers).status_code == 201
    nodes = [enroll(client, data_dir, n) for n in (1, 2)]
    response = client.post(
        "/api/v1/nodes/bulk",
        json={"node_ids": nodes, "labels": {"set": {"env": "prod"}}, "group": "web"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return client, headers, nodes


def snapshot(client: TestClient, headers: dict[str, str]) -> Any:
    response = client.get("/api/v1/nodes", params={"limit": 1000}, headers=headers)
    assert response.status_code == 200
    groups = client.get("/api/v1/groups", headers=headers)
    assert groups.status_code == 200
    nodes = [
        {k: v for k, v in node.items() if k not in ("status", "last_seen")}
        for node in response.json()["items"]
    ]
    return nodes, groups.json()


def audit_length(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        length = client.xlen(AUDIT_STREAM)
        assert isinstance(length, int)
        return length
    finally:
        client.close()


@needs_nodes
@pytest.mark.parametrize(
    ("change", "status", "member"),
    [
        ({"labels": {"set": {"env": "dev"}}}, 404, "unknown_node_ids"),
        ({"group": "no-such-group"}, 404, None),
        ({"labels": {"set": {"env": "dev"}, "remove": ["env"]}}, 400, None),
        ({"labels": {"set": {"bad key!": "v"}}}, 400, None),
    ],
    ids=["one-unknown-id", "unknown-group", "set-and-remove-same-key", "bad-label-key"],
)
def test_refused_bulk_update_changes_nothing(
    fleet: tuple[TestClient, dict[str, str], list[str]],
    redis_url: str,
    change: dict[str, Any],
    status: int,
    member: str | None,
) -> None:
    client, headers, nodes = fleet
    unknown = "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10"
    ids = [*nodes, unknown] if member == "unknown_node_ids" else nodes
    before, events = snapshot(client, headers), audit_length(redis_url)
    response = client.post("/api/v1/nodes/bulk", json={"node_ids": ids, **change}, headers=headers)
    body = assert_problem(response, status)
    if member is not None:
        assert body[member] == [unknown]
    assert snapshot(client, headers) == before
    assert audit_length(redis_url) == events


@needs_nodes
@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"labels": {"tier": "web"}, "group": "no-such-group"}, 404),
        ({"labels": {"bad key!": "v"}, "name": "renamed"}, 400),
        ({"labels": {"-starts-badly": "v"}}, 400),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, 400),
    ],
    ids=["unknown-group", "bad-label-key", "label-key-shape", "too-many-labels"],
)
def test_refused_node_update_changes_nothing(
    fleet: tuple[TestClient, dict[str, str], list[str]],
    redis_url: str,
    change: dict[str, Any],
    status: int,
) -> None:
    client, headers, nodes = fleet
    before, events = snapshot(client, headers), audit_length(redis_url)
    response = client.patch(f"/api/v1/nodes/{nodes[0]}", json=change, headers=headers)
    assert_problem(response, status)
    assert snapshot(client, headers) == before
    assert audit_length(redis_url) == events


@needs_nodes
def test_deleting_a_group_with_nodes_is_refused_and_keeps_it(
    fleet: tuple[TestClient, dict[str, str], list[str]], redis_url: str
) -> None:
    client, headers, _ = fleet
    before, events = snapshot(client, headers), audit_length(redis_url)
    body = assert_problem(client.delete("/api/v1/groups/web", headers=headers), 409)
    assert body["node_count"] == 2
    assert snapshot(client, headers) == before
    assert audit_length(redis_url) == events


@needs_nodes
@pytest.mark.parametrize(
    ("selector", "position"),
    [("env in a", 7), ("env in (a,b", 11), ("=prod", 0), ("env=prod,,tier", 9), ("env!", 3)],
)
def test_selector_syntax_errors_point_at_the_position(
    fleet: tuple[TestClient, dict[str, str], list[str]], selector: str, position: int
) -> None:
    client, headers, _ = fleet
    response = client.get("/api/v1/nodes", params={"selector": selector}, headers=headers)
    body = assert_problem(response, 400)
    assert body["position"] == position, body
    assert body["selector"] == selector


@needs_nodes
def test_deep_json_nesting_is_a_400_not_a_crash(
    fleet: tuple[TestClient, dict[str, str], list[str]],
) -> None:
    client, headers, _ = fleet
    deep = b'{"node_ids": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = client.post(
        "/api/v1/nodes/resolve",
        content=deep,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 400)

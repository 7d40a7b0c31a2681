"""The frame every Connexion service is built in: security, limits, problems, probes, metrics."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from connexion import AsyncApp
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from sm_shared.api_app import (
    ServiceResources,
    ServiceState,
    build_api_app,
    load_document,
)
from sm_shared.contracts import spec_path
from sm_shared.datadir import DataDir
from sm_shared.problems import PROBLEM_MEDIA_TYPE
from sm_shared.tokens import TokenVerifier, issue_access_token

MAX_BODY = 4096

SPEC = """
openapi: 3.0.3
info: {title: frame, version: "1"}
security: [{oauth2: [nodes:read]}]
paths:
  /healthz:
    get:
      operationId: sm_shared.probes.healthz
      security: []
      responses:
        "200": {description: ok, content: {application/json: {schema: {type: object}}}}
  /readyz:
    get:
      operationId: sm_shared.probes.readyz
      security: []
      responses:
        "200": {description: ok, content: {application/json: {schema: {type: object}}}}
        "503": {description: down, content: {application/problem+json: {schema: {type: object}}}}
  /metrics:
    get:
      operationId: sm_shared.probes.metrics
      security: []
      responses:
        "200": {description: ok, content: {text/plain: {schema: {type: string}}}}
  /items:
    get:
      operationId: list_items
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                required: [sub, scope]
                properties: {sub: {type: string}, scope: {type: string}}
                additionalProperties: false
    post:
      operationId: create_item
      security: [{oauth2: [nodes:write]}]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [name]
              properties: {name: {type: string, maxLength: 5000}}
              additionalProperties: false
      responses:
        "201":
          description: created
          content:
            application/json:
              schema:
                type: object
                required: [name]
                properties: {name: {type: string}}
                additionalProperties: false
        "400": {description: bad, content: {application/problem+json: {schema: {type: object}}}}
  /items/{item_id}:
    get:
      operationId: get_item
      parameters:
        - {name: item_id, in: path, required: true, schema: {type: string}}
      responses:
        "200": {description: ok, content: {application/json: {schema: {type: object}}}}
        "404": {description: missing, content: {application/problem+json: {schema: {type: object}}}}
components:
  securitySchemes:
    oauth2:
      type: oauth2
      flows:
        clientCredentials:
          tokenUrl: /token
          scopes: {nodes:read: read, nodes:write: write}
"""

HANDLERS = """
from sm_shared.problems import NotFound


async def list_items(token_info):
    return {"sub": token_info["sub"], "scope": token_info["scope"]}


async def create_item(body):
    return {"name": body["name"]}, 201


async def get_item(item_id):
    raise NotFound(f"no item {item_id}", item_id=item_id)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_app(
    tmp_path: Path,
    data: DataDir,
    *,
    redis_url: str,
    database_url: str | None = None,
    name: str = "frame",
) -> tuple[AsyncApp, ServiceState]:
    spec = tmp_path / "frame.yaml"
    spec.write_text(SPEC)
    (tmp_path / "sm_frame_handlers.py").write_text(HANDLERS)
    resources = ServiceResources.open(
        database_url or f"sqlite:///{tmp_path / f'{name}.db'}", redis_url
    )
    state = ServiceState(
        name=name,
        readiness=resources.readiness(),
        metrics=CollectorRegistry(),
        extra={"resources": resources},
    )
    app = build_api_app(
        name=name,
        spec=spec,
        package="sm_frame_handlers",
        verifier=TokenVerifier(data),
        state=state,
        lifespan=resources.lifespan,
        max_body_bytes=MAX_BODY,
        validate_responses=True,
    )
    return app, state


@pytest.fixture
def client(
    tmp_path: Path, data_dir: DataDir, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.syspath_prepend(str(tmp_path))
    app, _ = make_app(tmp_path, data_dir, redis_url=redis_url)
    with app.test_client() as test_client:
        yield test_client


def bearer(data: DataDir, *scopes: str, subject: str = "alice", ttl: int = 60) -> dict[str, str]:
    token = issue_access_token(data, subject=subject, client_id="t", scopes=scopes, ttl=ttl)
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body.get("detail"), str)
    assert body["detail"]
    return body


# --- security -----------------------------------------------------------------


def test_valid_token_reaches_the_handler_with_its_claims(
    client: TestClient, data_dir: DataDir
) -> None:
    response = client.get("/items", headers=bearer(data_dir, "nodes:read", subject="bob"))
    assert response.status_code == 200
    assert response.json() == {"sub": "bob", "scope": "nodes:read"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer a.b.c"},
    ],
)
def test_missing_or_malformed_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    assert_problem(client.get("/items", headers=headers), 401)


def test_expired_token_is_401(client: TestClient, data_dir: DataDir) -> None:
    assert_problem(client.get("/items", headers=bearer(data_dir, "nodes:read", ttl=-10)), 401)


def test_missing_scope_is_403(client: TestClient, data_dir: DataDir) -> None:
    assert_problem(client.get("/items", headers=bearer(data_dir, "metrics:read")), 403)
    assert_problem(
        client.post("/items", json={"name": "x"}, headers=bearer(data_dir, "nodes:read")), 403
    )
    response = client.post("/items", json={"name": "x"}, headers=bearer(data_dir, "nodes:write"))
    assert response.status_code == 201


def test_auth_is_checked_before_the_body(client: TestClient, data_dir: DataDir) -> None:
    assert_problem(client.post("/items", content=b"{not json"), 401)
    assert_problem(
        client.post("/items", content=b"{not json", headers=bearer(data_dir, "nodes:read")), 403
    )


def test_probes_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "service": "frame"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "service": "frame", "checks": ["database", "redis"]}


# --- problems and bad input -----------------------------------------------------


def test_handler_problem_becomes_problem_json(client: TestClient, data_dir: DataDir) -> None:
    body = assert_problem(client.get("/items/i9", headers=bearer(data_dir, "nodes:read")), 404)
    assert body == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "no item i9",
        "item_id": "i9",
    }


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    assert_problem(client.get("/nowhere"), 404)
    assert_problem(client.delete("/healthz"), 405)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"\xff\xfe\xfa", "application/json"),
        (b'{"name": "\xe9t\xe9"}', "application/json"),
        (b"{not json", "application/json"),
        (b'{"name": 5}', "application/json"),
        (b'{"name": "x", "extra": 1}', "application/json"),
        (b"[]", "application/json"),
        (b"", "application/json"),
        (b"name=x", "application/x-www-form-urlencoded"),
        (b"[" * 1500 + b"]" * 1500, "application/json"),
    ],
    ids=[
        "not-utf8",
        "latin1-in-json",
        "malformed",
        "wrong-type",
        "unknown-field",
        "array",
        "empty",
        "wrong-media-type",
        "deep-nesting",
    ],
)
def test_bad_bodies_are_precise_problems_never_500(
    client: TestClient, data_dir: DataDir, content: bytes, content_type: str
) -> None:
    response = client.post(
        "/items",
        content=content,
        headers={**bearer(data_dir, "nodes:write"), "Content-Type": content_type},
    )
    assert response.status_code in (400, 415), response.text
    assert_problem(response, response.status_code)


def test_non_utf8_body_says_so(client: TestClient, data_dir: DataDir) -> None:
    response = client.post(
        "/items",
        content=b"\xff\xfe\xfa",
        headers={**bearer(data_dir, "nodes:write"), "Content-Type": "application/json"},
    )
    body = assert_problem(response, 400)
    assert "UTF-8" in body["detail"]


# --- body size limit ------------------------------------------------------------


def test_body_over_the_limit_by_content_length_is_413(
    client: TestClient, data_dir: DataDir
) -> None:
    big = orjson.dumps({"name": "x" * MAX_BODY})
    body = assert_problem(
        client.post(
            "/items",
            content=big,
            headers={**bearer(data_dir, "nodes:write"), "Content-Type": "application/json"},
        ),
        413,
    )
    assert str(MAX_BODY) in body["detail"]


def test_body_at_the_limit_is_accepted(client: TestClient, data_dir: DataDir) -> None:
    body = orjson.dumps({"name": "x" * (MAX_BODY - len(b'{"name":""}'))})
    assert len(body) == MAX_BODY
    response = client.post(
        "/items",
        content=body,
        headers={**bearer(data_dir, "nodes:write"), "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text


def test_limit_applies_before_authentication(client: TestClient) -> None:
    # An unauthenticated caller cannot make the service buffer a large body.
    assert_problem(client.post("/items", content=b"x" * (MAX_BODY + 1)), 413)


def test_streamed_body_without_content_length_is_413(client: TestClient, data_dir: DataDir) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            sent.append(512)
            yield b"x" * 512
        yield b'"}'

    response = client.post(
        "/items",
        content=chunks(),
        headers={**bearer(data_dir, "nodes:write"), "Content-Type": "application/json"},
    )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_problem(response, 413)


def test_small_streamed_body_is_accepted(client: TestClient, data_dir: DataDir) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": '
        yield b'"streamed"}'

    response = client.post(
        "/items",
        content=chunks(),
        headers={**bearer(data_dir, "nodes:write"), "Content-Type": "application/json"},
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"name": "streamed"}


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", ""])
def test_invalid_content_length_is_400(client: TestClient, length: str) -> None:
    response = client.get("/healthz", headers={"Content-Length": length})
    assert_problem(response, 400)


# --- probes and metrics -------------------------------------------------------------


def test_readyz_reports_each_unreachable_dependency(
    tmp_path: Path, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    app, _ = make_app(
        tmp_path,
        data_dir,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        database_url=f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}",
    )
    with app.test_client() as test_client:
        body = assert_problem(test_client.get("/readyz"), 503)
        assert set(body["checks"]) == {"database", "redis"}
        assert test_client.get("/healthz").status_code == 200


def _samples(client: TestClient) -> dict[tuple[str, str], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counts: dict[tuple[str, str], float] = {}
    for line in response.text.splitlines():
        if line.startswith("http_requests_total{"):
            labels, value = line.split("} ")
            parts = dict(
                p.split("=") for p in labels.removeprefix("http_requests_total{").split(",")
            )
            counts[(parts["method"].strip('"'), parts["status"].strip('"'))] = float(value)
    return counts


def test_two_apps_in_one_process_count_separately(
    tmp_path: Path, data_dir: DataDir, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    first, first_state = make_app(tmp_path, data_dir, redis_url=redis_url, name="first")
    second, second_state = make_app(tmp_path, data_dir, redis_url=redis_url, name="second")
    assert first_state.metrics is not second_state.metrics
    with first.test_client() as one, second.test_client() as two:
        for _ in range(3):
            assert one.get("/healthz").status_code == 200
        one.get("/nowhere")
        two.get("/healthz")
        first_counts = _samples(one)
        second_counts = _samples(two)
        assert first_counts[("GET", "200")] == 3
        assert first_counts[("GET", "404")] == 1
        assert second_counts == {("GET", "200"): 1}
        # The scrape itself is counted afterwards.
        assert _samples(two)[("GET", "200")] == 2


def test_metrics_count_rejected_requests_too(client: TestClient, data_dir: DataDir) -> None:
    client.get("/items")
    client.post("/items", content=b"x" * (MAX_BODY + 1))
    counts = _samples(client)
    assert counts[("GET", "401")] == 1
    assert counts[("POST", "413")] == 1


# --- the document -------------------------------------------------------------------


def test_spec_path_finds_the_repository_documents() -> None:
    path = spec_path("sm_shared", "metrics.yaml")
    assert path.name == "metrics.yaml"
    assert path.parent.name == "openapi"
    with pytest.raises(FileNotFoundError):
        spec_path("sm_shared", "no-such-service.yaml")


@asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def test_load_document_parses_once_per_version_and_returns_copies(tmp_path: Path) -> None:
    path = tmp_path / "doc.yaml"
    path.write_text("openapi: 3.0.3\ninfo: {title: a, version: '1'}\npaths: {}\n")
    first = load_document(path)
    first["info"]["title"] = "changed by a caller"
    assert load_document(path)["info"]["title"] == "a"
    path.write_text("openapi: 3.0.3\ninfo: {title: b, version: '22'}\npaths: {}\n")
    assert load_document(path)["info"]["title"] == "b"


def test_served_document_is_the_file(client: TestClient, tmp_path: Path) -> None:
    served = client.get("/openapi.json").json()
    assert served["paths"].keys() == load_document(tmp_path / "frame.yaml")["paths"].keys()

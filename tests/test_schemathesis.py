"""Schemathesis against every service document, in process, with an admin token.

Each operation gets about 25 generated requests (``SM_SCHEMATHESIS_EXAMPLES``
for a longer run, e.g. ``SM_SCHEMATHESIS_EXAMPLES=500``; runs are
derandomized unless ``SM_SCHEMATHESIS_RANDOM=1``), valid and invalid
ones, and every response must hold to: no server error, the status code and
content type the document declares, and the response schema. Response
validation inside the app is on too (``validate_responses=True``).

The registry is given data first through its real endpoints (a group, a user,
a custom role, a service client, an enrollment token and nodes enrolled with
the enrollment key), and half of the generated requests to ``/{id}`` paths
name one of those, so the found branches run as well as the 404s.

The documents are read from ``openapi/``; the app under test is set on the
loaded schema per test (``schema.app``), which is what
``schemathesis.openapi.from_asgi`` does after fetching ``/openapi.json``.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis
import schemathesis
import schemathesis.python.asgi
import yaml
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.tokens import issue_access_token
from tests.conftest import CONNEXION_SERVICES, EVERY_SCOPE, OPENAPI, build_app

EXAMPLES = int(os.environ.get("SM_SCHEMATHESIS_EXAMPLES", "25"))
# Not run: `allow_header_conformance` (Connexion 3.3 answers 405 with an
# incomplete Allow header, an upstream false positive) and the stateful and
# auth-probing checks (the security contract has its own tests).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis directory left in the checkout
    derandomize=os.environ.get("SM_SCHEMATHESIS_RANDOM") is None,
    suppress_health_check=[
        # One app per operation serves all its examples on purpose.
        hypothesis.HealthCheck.function_scoped_fixture,
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.filter_too_much,
        hypothesis.HealthCheck.data_too_large,
    ],
)


def declared_paths(service: str) -> set[str]:
    return set(yaml.safe_load((OPENAPI / f"{service}.yaml").read_text()).get("paths", {}))


def enroll(client: TestClient, key: str, n: int) -> str:
    document = yaml.safe_load((OPENAPI / "registry.yaml").read_text())
    example = document["paths"]["/api/v1/enroll"]["post"]["requestBody"]["content"][
        "application/json"
    ]["example"]
    facts = {**example["facts"], "hostname": f"fuzz-{n}"}
    response = client.post(
        "/api/v1/enroll", json={"key": key, "machine_id": f"{n:032x}", "facts": facts}
    )
    assert response.status_code == 201, response.text
    node_id: str = response.json()["node_id"]
    return node_id


def seed_registry(data: DataDir, redis_url: str) -> dict[str, list[str]]:
    """Data through the real endpoints; returns known values by path parameter name and path."""
    admin = {
        "Authorization": "Bearer "
        + issue_access_token(
            data, subject="seeder", client_id="sm-tests", scopes=EVERY_SCOPE, ttl=300
        )
    }
    known: dict[str, list[str]] = {}
    with build_app("registry", data, redis_url).test_client() as client:
        declared = declared_paths("registry")

        def post(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
            if path not in declared:
                return None  # not in the contract yet
            response = client.post(path, json=body, headers=admin)
            assert response.status_code == 201, (path, response.text)
            created: dict[str, Any] = response.json()
            return created

        if post("/api/v1/groups", {"name": "web", "description": "fuzzed"}):
            known["/api/v1/groups/{name}:name"] = ["web"]
        if post("/api/v1/roles", {"name": "auditor", "scopes": ["nodes:read", "audit:read"]}):
            known["/api/v1/roles/{name}:name"] = ["auditor", "viewer"]
        if post(
            "/api/v1/users",
            {"username": "alice", "password": "correct horse battery staple", "role": "viewer"},
        ):
            known["/api/v1/users/{username}:username"] = ["alice"]
        if post("/api/v1/clients", {"client_id": "backup-job", "role": "viewer"}):
            known["/api/v1/clients/{client_id}:client_id"] = ["backup-job"]
        token = post("/api/v1/enrollment-tokens", {"ttl": 3600, "max_uses": 5})
        if token:
            known["/api/v1/enrollment-tokens/{token_id}:token_id"] = [token["id"]]
            known["/api/v1/enrollment-tokens/{token_id}/revoke:token_id"] = [token["id"]]
        if "/api/v1/enroll" in declared:
            key = str(load_key(data, KeyKind.ENROLLMENT))
            nodes = [enroll(client, key, n) for n in range(1, 6)]
            known["/api/v1/nodes/{node_id}:node_id"] = nodes
            known["/api/v1/nodes/{node_id}/duplicate:node_id"] = nodes
    return known


def admin_headers(data: DataDir) -> dict[str, str]:
    text = issue_access_token(
        data, subject="fuzzer", client_id="sm-tests", scopes=EVERY_SCOPE, ttl=900
    )
    return {"Authorization": f"Bearer {text}"}


@pytest.fixture(scope="module")
def seeded_registry(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str
) -> tuple[DataDir, dict[str, list[str]]]:
    """A registry data directory seeded once for the module (argon2 and enrollment are slow)."""
    data = DataDir(tmp_path_factory.mktemp("seeded") / "data")
    initialize(data)
    seed_redis = f"{redis_server}/6"
    redis.Redis.from_url(seed_redis).flushdb()
    return data, seed_registry(data, seed_redis)


class Target:
    """One service's app under test, with an admin token and known path values."""

    def __init__(
        self,
        service: str,
        data: DataDir,
        redis_url: str,
        known: dict[str, list[str]],
        **settings: Any,
    ) -> None:
        self.known = known
        self.app = build_app(service, data, redis_url, **settings)
        self.headers = admin_headers(data)
        self._cases = itertools.count()
        self._picks = itertools.count()

    def aim(self, case: Any) -> None:
        """Every other case, point the path's ids at data that exists."""
        if next(self._cases) % 2:
            return
        for name in list(case.path_parameters or {}):
            values = self.known.get(f"{case.path}:{name}")
            if values:
                case.path_parameters[name] = values[next(self._picks) % len(values)]

    def check(self, case: Any) -> None:
        # The schema picks the in-process (ASGI) transport from its app; the
        # transport sends to the app passed in (also for the checks' own probes).
        case.operation.schema.app = self.app
        self.aim(case)
        response = case.call_and_validate(headers=self.headers, checks=CHECKS, app=self.app)
        if os.environ.get("SM_FUZZ_TRACE"):  # what the run exercised, for a human reading -s output
            print("FUZZ", case.method, case.path, response.status_code)


def target(
    service: str,
    data: DataDir,
    redis_url: str,
    known: dict[str, list[str]] | None = None,
    **settings: Any,
) -> Iterator[Target]:
    try:
        yield Target(service, data, redis_url, known or {}, **settings)
    finally:
        # Schemathesis keeps each app's lifespan running until told; end it with the test.
        schemathesis.python.asgi.shutdown_lifespans()


@pytest.fixture
def registry_target(
    seeded_registry: tuple[DataDir, dict[str, list[str]]], tmp_path: Path, redis_url: str
) -> Iterator[Target]:
    """A copy of the seeded registry for each operation: what one operation's fuzzing
    deletes or changes is not what the next one starts from."""
    template, known = seeded_registry
    data = DataDir(tmp_path / "registry-data")
    shutil.copytree(template.root, data.root)
    yield from target("registry", data, redis_url, known)


@pytest.fixture
def metrics_target(data_dir: DataDir, redis_url: str) -> Iterator[Target]:
    yield from target("metrics", data_dir, redis_url)


@pytest.fixture
def commands_target(
    data_dir: DataDir, redis_url: str, registry_origin: str, registry_api: Any
) -> Iterator[Target]:
    """The commands app resolving targets through a real registry that knows one node,
    and a command on it (so the ``/{command_id}`` paths find something half the time)."""
    registry_api.enroll("fuzzed-node")
    commands = Target("commands", data_dir, redis_url, {}, registry_url=registry_origin)
    with TestClient(commands.app) as client:
        response = client.post(
            "/api/v1/commands",
            json={"target": {"all": True}, "kind": "shell", "shell": {"script": "true"}},
            headers=commands.headers,
        )
    assert response.status_code == 202, response.text
    command = response.json()
    execution = command["executions"][0]["id"]
    known = {
        f"{path}:command_id": [command["id"]]
        for path in declared_paths("commands")
        if "{command_id}" in path
    }
    known.update(
        {
            f"{path}:execution_id": [execution]
            for path in declared_paths("commands")
            if "{execution_id}" in path
        }
    )
    yield from target("commands", data_dir, redis_url, known, registry_url=registry_origin)


# The coverage phase builds the largest array an operation accepts; for
# `node_ids` of the bulk update (maxItems 10000, uniqueItems) Schemathesis
# 4.32.5 spends ~2 minutes drawing 10,000 distinct ids at collection. That
# operation keeps the examples and fuzzing phases (25 cases) and loses only
# the boundary cases; the registry's own tests cover its limits.
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-operation-id": "nodes.bulk_update_nodes",
                "phases": {"coverage": {"enabled": False}},
            }
        ]
    }
)


def document(service: str) -> BaseSchema:
    """The service's document as Connexion serves it (read from ``openapi/``)."""
    return schemathesis.openapi.from_path(OPENAPI / f"{service}.yaml", config=CONFIG)


@document("registry").parametrize()
@SETTINGS
def test_registry(case: Any, registry_target: Target) -> None:
    registry_target.check(case)


@document("metrics").parametrize()
@SETTINGS
def test_metrics(case: Any, metrics_target: Target) -> None:
    metrics_target.check(case)


@document("commands").parametrize()
@SETTINGS
def test_commands(case: Any, commands_target: Target) -> None:
    commands_target.check(case)


def test_every_connexion_document_is_fuzzed() -> None:
    fuzzed = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert set(CONNEXION_SERVICES) <= fuzzed


BROKEN_SPEC = """
openapi: 3.0.3
info: {title: broken, version: "1"}
paths:
  /shape:
    get:
      operationId: wrong_shape
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                required: [count]
                properties: {count: {type: integer}}
                additionalProperties: false
  /crash:
    get:
      operationId: crash
      responses:
        "200": {description: ok, content: {application/json: {schema: {type: object}}}}
"""

BROKEN_HANDLERS = """
async def wrong_shape():
    return {"count": "three"}


async def crash():
    return {"detail": "boom"}, 500
"""


@pytest.mark.parametrize("path", ["/shape", "/crash"])
def test_the_checks_catch_what_they_are_for(
    tmp_path: Path, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """A control: a schema violation and a server error fail the same checks the runs above use."""
    from contextlib import asynccontextmanager

    from prometheus_client import CollectorRegistry

    from sm_shared.api_app import ServiceState, build_api_app
    from sm_shared.tokens import TokenVerifier

    (tmp_path / "broken.yaml").write_text(BROKEN_SPEC)
    (tmp_path / "sm_broken_handlers.py").write_text(BROKEN_HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))

    @asynccontextmanager
    async def nothing() -> Any:
        yield

    app = build_api_app(
        name="broken",
        spec=tmp_path / "broken.yaml",
        package="sm_broken_handlers",
        verifier=TokenVerifier(data_dir),
        state=ServiceState(name="broken", readiness={}, metrics=CollectorRegistry()),
        lifespan=nothing,
        max_body_bytes=1024,
        # Off: the checks, not the app's own validation, must catch the bad shape.
        validate_responses=False,
    )
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        case = schema[path]["GET"].Case()
        with pytest.raises(FailureGroup) as failures:
            case.call_and_validate(checks=CHECKS)
        expected = {"/shape": "Response violates schema", "/crash": "Server error"}[path]
        assert expected in str(failures.value)
    finally:
        schemathesis.python.asgi.shutdown_lifespans()

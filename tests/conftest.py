"""What the cross-service tests share: the OpenAPI documents walked generically, and the apps.

Every operation of every document Connexion serves becomes an :class:`Operation`:
its method, path, security requirements, a request URL with plausible path
parameters and a minimal valid body (the document's example when it has one).
Tests parametrize over them with the ``secured_operation``,
``viewer_write_operation`` and ``json_body_operation`` fixtures (see
:func:`pytest_generate_tests`), so a new operation is covered the moment it
lands in a document.

Apps are the real ones: ``create_app(Settings(data_dir=..., redis_url=...,
validate_responses=True))`` served through Connexion's test client.
"""

from __future__ import annotations

import copy
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
import yaml
from connexion import AsyncApp
from starlette.testclient import TestClient

from sm_shared.datadir import DataDir
from sm_shared.scopes import ALL_SCOPES, BUILTIN_ROLES, SERVICE
from sm_shared.tokens import issue_access_token

REPO: Final = Path(__file__).resolve().parents[1]
OPENAPI: Final = REPO / "openapi"
# The documents Connexion serves. The gateway's document is served by the
# websockets server and declares no oauth2 operation (its one secured
# operation, /agent/ws, takes a node credential), so it is not in this list.
CONNEXION_SERVICES: Final = ("registry", "metrics", "commands")
METHODS: Final = ("get", "put", "post", "patch", "delete")
WRITE_METHODS: Final = frozenset({"put", "post", "patch", "delete"})
EVERY_SCOPE: Final = frozenset({*ALL_SCOPES, SERVICE})
VIEWER_SCOPES: Final = frozenset(BUILTIN_ROLES["viewer"])
PROBLEM: Final = "application/problem+json"


# --- documents ---------------------------------------------------------------------


def load_document(service: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((OPENAPI / f"{service}.yaml").read_text())
    return document


def resolve(document: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """``node`` with every local ``$ref`` replaced by what it points at."""
    if depth > 50:
        return node  # a recursive schema; deep enough for examples
    if isinstance(node, dict):
        if "$ref" in node and isinstance(node["$ref"], str):
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return resolve(document, target, depth + 1)
        return {k: resolve(document, v, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(document, v, depth + 1) for v in node]
    return node


PLAUSIBLE_BY_FORMAT: Final = {
    "uuid": "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10",
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "ipv4": "10.0.0.1",
    "ipv6": "fd00::1",
    "email": "alice@example.org",
    "uri": "https://example.org/",
    "hostname": "web-1",
}


def example_of(schema: dict[str, Any]) -> Any:
    """A minimal value valid for ``schema`` (required members only)."""
    if "example" in schema:
        return copy.deepcopy(schema["example"])
    if "default" in schema:
        return copy.deepcopy(schema["default"])
    if "enum" in schema:
        return schema["enum"][0]
    for combinator in ("allOf", "oneOf", "anyOf"):
        if combinator in schema:
            if combinator == "allOf":
                merged: dict[str, Any] = {}
                for part in schema["allOf"]:
                    value = example_of(part)
                    if isinstance(value, dict):
                        merged.update(value)
                return merged
            return example_of(schema[combinator][0])
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {name: example_of(properties[name]) for name in schema.get("required", [])}
    if kind == "array":
        return [example_of(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "string":
        if schema.get("format") in PLAUSIBLE_BY_FORMAT:
            return PLAUSIBLE_BY_FORMAT[schema["format"]]
        return "x" * max(int(schema.get("minLength", 1)), 1)
    return None


@dataclass(frozen=True)
class Operation:
    """One operation of one document, with what a test needs to call it."""

    service: str
    method: str
    path: str
    spec: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]
    document_security: tuple[dict[str, list[str]], ...]
    path_values: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.service} {self.method.upper()} {self.path}"

    @property
    def requirements(self) -> tuple[dict[str, list[str]], ...]:
        """The security requirements (alternatives); the document's unless the operation says."""
        if "security" in self.spec:
            return tuple(self.spec["security"])
        return self.document_security

    @property
    def secured(self) -> bool:
        """Whether every alternative needs an oauth2 token (none is anonymous)."""
        alternatives = self.requirements
        return bool(alternatives) and all("oauth2" in alt for alt in alternatives)

    @property
    def required_scopes(self) -> frozenset[str]:
        """Every scope any alternative names: lacking all of them fails every alternative."""
        return frozenset(s for alt in self.requirements for s in alt.get("oauth2", []))

    def satisfied_by(self, scopes: frozenset[str]) -> bool:
        return any(set(alt.get("oauth2", [])) <= scopes for alt in self.requirements)

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS

    def url(self, **overrides: str) -> str:
        """The path with every path parameter filled (plausible values, or ``overrides``)."""
        path = self.path
        for param in self.parameters:
            if param.get("in") != "path":
                continue
            name = param["name"]
            value = overrides.get(name) or self.path_values.get(name)
            if value is None:
                value = str(param.get("example") or example_of(param.get("schema", {})))
            path = path.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        return path

    @property
    def request_body(self) -> tuple[str, dict[str, Any]] | None:
        """(media type, media object) of the request body, if the operation takes one."""
        body = self.spec.get("requestBody")
        if not body:
            return None
        media_type, media = next(iter(body["content"].items()))
        return media_type, media

    def body_example(self) -> tuple[str, bytes] | None:
        """(content type, bytes) of a minimal valid body: the document's example when present."""
        request_body = self.request_body
        if request_body is None:
            return None
        media_type, media = request_body
        if "example" in media:
            value = copy.deepcopy(media["example"])
        elif media.get("examples"):
            value = copy.deepcopy(next(iter(media["examples"].values()))["value"])
        else:
            value = example_of(media.get("schema", {}))
        if media_type == "application/x-www-form-urlencoded":
            return media_type, urllib.parse.urlencode(value).encode()
        return media_type, orjson.dumps(value)

    def call(self, client: TestClient, headers: dict[str, str] | None = None, **path: str) -> Any:
        """Send the operation with its example body (if any)."""
        body = self.body_example()
        all_headers = dict(headers or {})
        content: bytes | None = None
        if body is not None:
            all_headers["Content-Type"] = body[0]
            content = body[1]
        return client.request(
            self.method.upper(), self.url(**path), content=content, headers=all_headers
        )


def operations(service: str) -> list[Operation]:
    document = load_document(service)
    found = []
    for path, item in document.get("paths", {}).items():
        item = resolve(document, item)
        shared = item.get("parameters", [])
        for method in METHODS:
            if method not in item:
                continue
            spec = item[method]
            names = {(p["name"], p["in"]) for p in spec.get("parameters", [])}
            parameters = (
                *[p for p in shared if (p["name"], p["in"]) not in names],
                *spec.get("parameters", []),
            )
            found.append(
                Operation(
                    service=service,
                    method=method,
                    path=path,
                    spec=spec,
                    parameters=tuple(parameters),
                    document_security=tuple(document.get("security", [])),
                )
            )
    return found


def all_operations() -> list[Operation]:
    return [op for service in CONNEXION_SERVICES for op in operations(service)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the operation fixtures from the documents (collected, never hand-listed)."""
    every = all_operations()
    selections: dict[str, list[Operation]] = {
        "secured_operation": [op for op in every if op.secured],
        "viewer_write_operation": [
            op for op in every if op.secured and op.is_write and not op.satisfied_by(VIEWER_SCOPES)
        ],
        "json_body_operation": [
            op
            for op in every
            if op.request_body is not None and op.request_body[0] == "application/json"
        ],
        "any_operation": every,
    }
    for fixture, selected in selections.items():
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, selected, ids=[op.label for op in selected])


# --- apps -----------------------------------------------------------------------


def build_app(service: str, data: DataDir, redis_url: str, **settings: Any) -> AsyncApp:
    """The real app of ``service`` on ``data`` (its SQLite file inside), response validation on."""
    common: dict[str, Any] = {
        "data_dir": data.root,
        "redis_url": redis_url,
        "validate_responses": True,
        **settings,
    }
    if service == "registry":
        from sm_registry import RegistrySettings
        from sm_registry import create_app as registry_app

        return registry_app(RegistrySettings(**common))
    if service == "metrics":
        from sm_metrics import MetricsSettings
        from sm_metrics import create_app as metrics_app

        return metrics_app(MetricsSettings(**common))
    if service == "commands":
        from sm_commands import CommandsSettings
        from sm_commands import create_app as commands_app

        return commands_app(CommandsSettings(**common))
    raise ValueError(service)


Tokens = Callable[..., dict[str, str]]


@pytest.fixture
def bearer(data_dir: DataDir) -> Tokens:
    """``bearer(*scopes, subject=..., ttl=...)`` → an Authorization header for ``data_dir``."""

    def make(*scopes: str, subject: str = "tester", ttl: int = 300) -> dict[str, str]:
        token = issue_access_token(
            data_dir, subject=subject, client_id="sm-tests", scopes=scopes, ttl=ttl
        )
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def clients(data_dir: DataDir, redis_url: str) -> Iterator[dict[str, TestClient]]:
    """A test client per Connexion service, lifespans running, on one data dir and Redis."""
    opened: dict[str, TestClient] = {}
    try:
        for service in CONNEXION_SERVICES:
            client = build_app(service, data_dir, redis_url).test_client()
            opened[service] = client.__enter__()
        yield opened
    finally:
        for client in opened.values():
            client.__exit__(None, None, None)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """``response`` is a problem+json document of ``status`` with a title and a detail."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert isinstance(body.get("title"), str)
    assert body["title"]
    assert isinstance(body.get("detail"), str)
    assert body["detail"]
    return body

"""The Connexion caches change cost, never behaviour: each request still sees its own values."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

from sm_shared import connexion_tuning
from sm_shared.api_app import ServiceState, build_api_app
from sm_shared.datadir import DataDir
from sm_shared.tokens import TokenVerifier, issue_access_token

SPEC = """
openapi: 3.0.3
info: {title: tuning, version: "1"}
paths:
  /items/{kind}:
    get:
      operationId: echo
      security: [{oauth2: [nodes:read]}]
      parameters:
        - {name: kind, in: path, required: true, schema: {type: string, enum: [a, b]}}
        - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 9, default: 3}}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: object
                required: [kind, limit, sub]
                properties:
                  kind: {type: string}
                  limit: {type: integer}
                  sub: {type: string}
                additionalProperties: false
components:
  securitySchemes:
    oauth2:
      type: oauth2
      flows:
        clientCredentials: {tokenUrl: /token, scopes: {nodes:read: read}}
"""

HANDLERS = """
async def echo(kind, limit=3, token_info=None):
    return {"kind": kind, "limit": limit, "sub": token_info["sub"]}
"""


@pytest.fixture
def client(
    tmp_path: Path, data_dir: DataDir, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    (tmp_path / "tuning_spec.yaml").write_text(SPEC)
    (tmp_path / "tuning_handlers.py").write_text(HANDLERS)
    monkeypatch.syspath_prepend(str(tmp_path))

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        yield

    app = build_api_app(
        name="tuning",
        spec=tmp_path / "tuning_spec.yaml",
        package="tuning_handlers",
        verifier=TokenVerifier(data_dir),
        state=ServiceState(name="tuning", readiness={}, metrics=CollectorRegistry()),
        lifespan=lifespan,
        max_body_bytes=1024,
        validate_responses=True,
    )
    with app.test_client() as test_client:
        yield test_client


def _auth(data_dir: DataDir, subject: str) -> dict[str, str]:
    token = issue_access_token(
        data_dir, subject=subject, client_id="t", scopes=["nodes:read"], ttl=60
    )
    return {"Authorization": f"Bearer {token}"}


def test_applies_to_the_pinned_version() -> None:
    assert connexion_tuning.apply() is True


def test_each_request_gets_its_own_arguments(client: TestClient, data_dir: DataDir) -> None:
    seen = [
        client.get(f"/items/{kind}", params=params, headers=_auth(data_dir, sub)).json()
        for kind, params, sub in [
            ("a", {"limit": 5}, "u1"),
            ("b", {}, "u2"),
            ("a", {"limit": 9}, "u3"),
        ]
    ]
    assert seen == [
        {"kind": "a", "limit": 5, "sub": "u1"},
        {"kind": "b", "limit": 3, "sub": "u2"},
        {"kind": "a", "limit": 9, "sub": "u3"},
    ]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/items/a", {"limit": 0}),
        ("/items/a", {"limit": 10}),
        ("/items/c", {}),
        ("/items/a", {"limit": "x"}),
    ],
)
def test_cached_validators_still_reject(
    client: TestClient, data_dir: DataDir, path: str, params: dict[str, object]
) -> None:
    # a valid request first, so every cache is warm
    assert (
        client.get("/items/a", params={"limit": 2}, headers=_auth(data_dir, "u")).status_code == 200
    )
    response = client.get(path, params=params, headers=_auth(data_dir, "u"))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_scopes_still_enforced_after_warm_up(client: TestClient, data_dir: DataDir) -> None:
    assert client.get("/items/a", headers=_auth(data_dir, "u")).status_code == 200
    token = issue_access_token(
        data_dir, subject="v", client_id="t", scopes=["metrics:read"], ttl=60
    )
    response = client.get("/items/a", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_orjson_jsonifier_encodes_like_connexion() -> None:
    import datetime as dt
    import json
    import uuid
    from decimal import Decimal

    jsonifier = connexion_tuning.OrjsonJsonifier()
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    ident = uuid.UUID(int=7)
    text = jsonifier.dumps({"a": [1, 2.5, None, "é"], "t": when, "u": ident, "d": Decimal("1.10")})
    assert text.endswith("\n")
    assert json.loads(text) == {
        "a": [1, 2.5, None, "é"],
        "t": "2026-01-02T03:04:05+00:00",
        "u": str(ident),
        "d": "1.10",
    }
    with pytest.raises(TypeError):
        jsonifier.dumps({"x": object()})

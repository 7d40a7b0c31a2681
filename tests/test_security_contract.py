"""Every oauth2-secured operation of every document refuses what it must.

The operations come from the documents (``tests/conftest.py``), never from a
hand list: for each, no token, a malformed token, a token signed by another
key and an expired token are 401 problems; a token lacking the operation's
scopes is a 403 problem; and a token with every scope gets past security (the
control that shows the refusals are about the token). A viewer gets 403 on
every write operation that needs a scope the viewer role lacks.

Connexion checks security before it validates parameters and bodies, so the
requests carry the document's example (or a minimal) body and plausible path
parameters; nothing in them decides the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from starlette.testclient import TestClient

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.tokens import issue_access_token
from tests.conftest import (
    EVERY_SCOPE,
    VIEWER_SCOPES,
    Operation,
    all_operations,
    assert_problem,
    build_app,
)

# Connexion's own details: a token without the operation's scopes, and no/bad tokens.
SCOPE_REFUSAL = "Provided token does not have the required scope"
TOKEN_REFUSALS = frozenset(
    {
        "No authorization token provided",
        "Invalid authorization header",
        "Provided token is not valid",
    }
)


@pytest.fixture(scope="module")
def contract(
    tmp_path_factory: pytest.TempPathFactory,
    redis_server: str,
    registry_server: Callable[..., AbstractContextManager[str]],
) -> Iterator[tuple[DataDir, DataDir, dict[str, TestClient]]]:
    """One set of apps for the module (security refusals write nothing), plus a foreign data dir."""
    root = tmp_path_factory.mktemp("contract")
    data = DataDir(root / "data")
    initialize(data)
    foreign = DataDir(root / "foreign")
    initialize(foreign)
    # A database of its own (the per-test fixtures flush database 0).
    redis_url = f"{redis_server}/5"
    opened: dict[str, TestClient] = {}
    # Commands resolve targets through a real registry.
    with registry_server(data, redis_url) as registry_origin:
        try:
            for service in sorted({op.service for op in all_operations()}):
                settings = {"registry_url": registry_origin} if service == "commands" else {}
                client = build_app(service, data, redis_url, **settings).test_client()
                opened[service] = client.__enter__()
            yield data, foreign, opened
        finally:
            for client in opened.values():
                client.__exit__(None, None, None)


def token(data: DataDir, scopes: frozenset[str], *, ttl: int = 300) -> dict[str, str]:
    text = issue_access_token(data, subject="tester", client_id="sm-tests", scopes=scopes, ttl=ttl)
    return {"Authorization": f"Bearer {text}"}


def test_documents_declare_secured_operations() -> None:
    # The parametrized tests below are only as good as the walk that finds operations.
    secured = [op for op in all_operations() if op.secured]
    assert any(op.service == "registry" for op in secured)
    assert all(op.required_scopes <= EVERY_SCOPE for op in secured), [
        (op.label, op.required_scopes - EVERY_SCOPE) for op in secured
    ]


def test_operations_without_security_are_deliberate() -> None:
    """Anonymous operations are the probes, the trust bootstrap, the token and enroll endpoints."""
    anonymous = {op.path for op in all_operations() if not op.secured}
    allowed = {
        "/healthz",
        "/readyz",
        "/metrics",
        "/ca.pem",
        "/.well-known/jwks.json",
        "/api/v1/oauth/token",
        "/api/v1/enroll",
    }
    assert anonymous <= allowed, anonymous - allowed


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["no-token", "empty-bearer", "malformed", "alg-none", "basic"],
)
def test_missing_or_malformed_token_is_401(
    contract: tuple[DataDir, DataDir, dict[str, TestClient]],
    secured_operation: Operation,
    headers: dict[str, str],
) -> None:
    _, _, clients = contract
    body = assert_problem(secured_operation.call(clients[secured_operation.service], headers), 401)
    assert body["detail"] in TOKEN_REFUSALS


def test_token_signed_by_another_key_is_401(
    contract: tuple[DataDir, DataDir, dict[str, TestClient]], secured_operation: Operation
) -> None:
    _, foreign, clients = contract
    response = secured_operation.call(
        clients[secured_operation.service], token(foreign, EVERY_SCOPE)
    )
    assert assert_problem(response, 401)["detail"] in TOKEN_REFUSALS


def test_expired_token_is_401(
    contract: tuple[DataDir, DataDir, dict[str, TestClient]], secured_operation: Operation
) -> None:
    data, _, clients = contract
    response = secured_operation.call(
        clients[secured_operation.service], token(data, EVERY_SCOPE, ttl=-1)
    )
    assert assert_problem(response, 401)["detail"] in TOKEN_REFUSALS


def test_token_lacking_the_scopes_is_403(
    contract: tuple[DataDir, DataDir, dict[str, TestClient]], secured_operation: Operation
) -> None:
    required = secured_operation.required_scopes
    if not required:
        pytest.skip("any valid token may call it (oauth2 with no scope); nothing to lack")
    data, _, clients = contract
    lacking = EVERY_SCOPE - required
    assert not secured_operation.satisfied_by(lacking)
    body = assert_problem(
        secured_operation.call(clients[secured_operation.service], token(data, lacking)), 403
    )
    assert SCOPE_REFUSAL in body["detail"]


def test_token_with_every_scope_passes_security(
    contract: tuple[DataDir, DataDir, dict[str, TestClient]], secured_operation: Operation
) -> None:
    """The control: with all scopes the same request is not refused for its token."""
    data, _, clients = contract
    response = secured_operation.call(clients[secured_operation.service], token(data, EVERY_SCOPE))
    assert response.status_code < 500, response.text
    if response.status_code in (401, 403):
        # A documented refusal of the operation's own (an unknown node credential, a
        # token that is not a user's), never the security layer's.
        assert str(response.status_code) in secured_operation.spec["responses"]
        detail = response.json()["detail"]
        assert detail not in TOKEN_REFUSALS
        assert SCOPE_REFUSAL not in detail


def test_viewer_gets_403_on_every_write(
    contract: tuple[DataDir, DataDir, dict[str, TestClient]], viewer_write_operation: Operation
) -> None:
    data, _, clients = contract
    response = viewer_write_operation.call(
        clients[viewer_write_operation.service], token(data, VIEWER_SCOPES)
    )
    body = assert_problem(response, 403)
    assert SCOPE_REFUSAL in body["detail"]


def test_viewer_write_operations_are_found() -> None:
    """The registry's node, group, user and enrollment writes are among them (computed, not listed)."""
    found: set[tuple[str, str]] = set()
    for op in all_operations():
        if op.secured and op.is_write and not op.satisfied_by(VIEWER_SCOPES):
            found.add((op.method, op.path))
    expected_if_declared = {
        ("patch", "/api/v1/nodes/{node_id}"),
        ("delete", "/api/v1/nodes/{node_id}"),
        ("post", "/api/v1/groups"),
        ("post", "/api/v1/users"),
        ("post", "/api/v1/enrollment-tokens"),
    }
    declared = {(op.method, op.path) for op in all_operations()}
    assert expected_if_declared & declared <= found

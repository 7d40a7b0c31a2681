"""The token endpoint: grants, scopes, RFC 6749 errors and backoff, against real Redis and SQLite."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from connexion import AsyncApp
from starlette.testclient import TestClient

from sm_registry import RegistrySettings, create_app
from sm_registry.oauth import SERVICES_SCOPES, TOKEN_PATH
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.contracts import spec_path
from sm_shared.datadir import DataDir
from sm_shared.scopes import ALL_SCOPES, BUILTIN_ROLES, SERVICE
from sm_shared.tokens import TokenVerifier

ADMIN_SCOPES = " ".join(sorted(BUILTIN_ROLES["admin"]))
CreateUser = Callable[..., dict[str, Any]]


def secret_key(data_dir: DataDir) -> str:
    return str(load_key(data_dir, KeyKind.SECRET))


def admin_form(secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": "sm-admin", "client_secret": secret}


def password_form(username: str, password: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "client_id": "sm-client",
        "username": username,
        "password": password,
        **extra,
    }


def assert_oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert set(body) <= {"error", "error_description", "error_uri"}
    return body


# --- client credentials: the secret key -------------------------------------------------


def test_secret_key_gets_an_admin_token_that_verifies(
    client: TestClient, data_dir: DataDir
) -> None:
    response = client.post(TOKEN_PATH, data=admin_form(secret_key(data_dir)))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == ADMIN_SCOPES
    assert "refresh_token" not in body
    claims = TokenVerifier(data_dir).verify(body["access_token"])
    assert claims.subject == "sm-admin"
    assert claims.client_id == "sm-admin"
    assert claims.scopes == frozenset(ALL_SCOPES)
    assert claims.raw["exp"] - claims.raw["iat"] == 900
    # The token opens an admin operation.
    listed = client.get(
        "/api/v1/users", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert listed.status_code == 200


def test_http_basic_client_authentication(client: TestClient, data_dir: DataDir) -> None:
    basic = base64.b64encode(f"sm-admin:{secret_key(data_dir)}".encode()).decode()
    response = client.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200, response.text
    assert TokenVerifier(data_dir).verify(response.json()["access_token"]).subject == "sm-admin"


def test_access_token_ttl_comes_from_settings(
    data_dir: DataDir, settings: RegistrySettings
) -> None:
    app = create_app(settings.model_copy(update={"access_token_ttl": 60}))
    with app.test_client(base_url="https://testserver") as client:
        body = client.post(TOKEN_PATH, data=admin_form(secret_key(data_dir))).json()
    assert body["expires_in"] == 60
    claims = TokenVerifier(data_dir).verify(body["access_token"]).raw
    assert claims["exp"] - claims["iat"] == 60


def test_wrong_secret_is_invalid_client(client: TestClient, data_dir: DataDir) -> None:
    wrong = secret_key(data_dir)[:-4] + "AAAA"
    body = assert_oauth_error(
        client.post(TOKEN_PATH, data=admin_form(wrong)), 401, "invalid_client"
    )
    assert "secret" in body["error_description"]


def test_unknown_client_is_invalid_client(client: TestClient, data_dir: DataDir) -> None:
    form = {**admin_form(secret_key(data_dir)), "client_id": "nobody"}
    response = client.post(TOKEN_PATH, data=form)
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


def test_the_enrollment_key_obtains_no_token(client: TestClient, data_dir: DataDir) -> None:
    enrollment = str(load_key(data_dir, KeyKind.ENROLLMENT))
    for client_id in ("sm-admin", "sm-services", "sm-enroll", "sm-client"):
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": enrollment,
        }
        assert_oauth_error(client.post(TOKEN_PATH, data=form), 401, "invalid_client")
    basic = base64.b64encode(f"sm-admin:{enrollment}".encode()).decode()
    response = client.post(
        TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert_oauth_error(response, 401, "invalid_client")
    # Nor as a user's password.
    assert_oauth_error(
        client.post(TOKEN_PATH, data=password_form("admin", enrollment)), 400, "invalid_grant"
    )


def test_rotated_secret_key_takes_effect_at_once(client: TestClient, data_dir: DataDir) -> None:
    from sm_shared.access_keys import rotate_access_key

    old = secret_key(data_dir)
    new = str(rotate_access_key(data_dir, KeyKind.SECRET))
    assert client.post(TOKEN_PATH, data=admin_form(new)).status_code == 200
    assert_oauth_error(client.post(TOKEN_PATH, data=admin_form(old)), 401, "invalid_client")


# --- client credentials: the services -----------------------------------------------------


def test_services_client_gets_the_services_scopes(client: TestClient, data_dir: DataDir) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": "sm-services",
        "client_secret": data_dir.service_secret.read_text(),
    }
    response = client.post(TOKEN_PATH, data=form)
    assert response.status_code == 200, response.text
    claims = TokenVerifier(data_dir).verify(response.json()["access_token"])
    assert claims.scopes == SERVICES_SCOPES
    assert claims.scopes == {
        "service",
        "nodes:read",
        "nodes:write",
        "metrics:read",
        "commands:read",
        "audit:read",
    }
    assert claims.subject == "sm-services"
    # The secret key is not the services' secret.
    form["client_secret"] = secret_key(data_dir)
    assert_oauth_error(client.post(TOKEN_PATH, data=form), 401, "invalid_client")


# --- scope narrowing ------------------------------------------------------------------------


def test_scope_narrows_the_token(client: TestClient, data_dir: DataDir) -> None:
    form = {**admin_form(secret_key(data_dir)), "scope": "nodes:read  metrics:read"}
    body = client.post(TOKEN_PATH, data=form).json()
    assert body["scope"] == "metrics:read nodes:read"
    claims = TokenVerifier(data_dir).verify(body["access_token"])
    assert claims.scopes == {"nodes:read", "metrics:read"}
    # A narrowed token is refused where the dropped scope is needed.
    denied = client.get(
        "/api/v1/users", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert denied.status_code == 403


@pytest.mark.parametrize("scope", [SERVICE, "nodes:read made:up", 'bad"scope', "nodes:réad"])
def test_scope_never_widens(client: TestClient, data_dir: DataDir, scope: str) -> None:
    form = {**admin_form(secret_key(data_dir)), "scope": scope}
    body = assert_oauth_error(client.post(TOKEN_PATH, data=form), 400, "invalid_scope")
    assert body["error_description"]


# --- users: the password grant ----------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_user_token_carries_exactly_the_role_scopes(
    client: TestClient, data_dir: DataDir, create_user: CreateUser, role: str
) -> None:
    create_user("alice", role)
    response = client.post(TOKEN_PATH, data=password_form("alice", "alice-password"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == " ".join(sorted(BUILTIN_ROLES[role]))
    claims = TokenVerifier(data_dir).verify(body["access_token"])
    assert claims.scopes == frozenset(BUILTIN_ROLES[role])
    assert claims.subject == "alice"
    assert claims.client_id == "sm-client"


def test_user_may_narrow_but_not_widen(client: TestClient, create_user: CreateUser) -> None:
    create_user("vera")
    narrowed = client.post(
        TOKEN_PATH, data=password_form("vera", "vera-password", scope="nodes:read")
    )
    assert narrowed.json()["scope"] == "nodes:read"
    widened = client.post(TOKEN_PATH, data=password_form("vera", "vera-password", scope="admin"))
    assert_oauth_error(widened, 400, "invalid_scope")


def test_wrong_password_and_unknown_user_look_the_same(
    client: TestClient, create_user: CreateUser
) -> None:
    create_user("alice")
    wrong = assert_oauth_error(
        client.post(TOKEN_PATH, data=password_form("alice", "not-her-password")),
        400,
        "invalid_grant",
    )
    unknown = assert_oauth_error(
        client.post(TOKEN_PATH, data=password_form("nobody", "whatever-password")),
        400,
        "invalid_grant",
    )
    assert wrong == unknown


def test_disabled_and_deleted_users_get_no_token(
    client: TestClient, admin: dict[str, str], create_user: CreateUser
) -> None:
    create_user("dora", "operator")
    assert client.post(TOKEN_PATH, data=password_form("dora", "dora-password")).status_code == 200

    patched = client.patch("/api/v1/users/dora", json={"disabled": True}, headers=admin)
    assert patched.status_code == 200
    body = assert_oauth_error(
        client.post(TOKEN_PATH, data=password_form("dora", "dora-password")), 400, "invalid_grant"
    )
    assert "disabled" in body["error_description"]

    client.patch("/api/v1/users/dora", json={"disabled": False}, headers=admin)
    assert client.post(TOKEN_PATH, data=password_form("dora", "dora-password")).status_code == 200

    assert client.delete("/api/v1/users/dora", headers=admin).status_code == 204
    assert_oauth_error(
        client.post(TOKEN_PATH, data=password_form("dora", "dora-password")), 400, "invalid_grant"
    )


def test_password_grant_needs_the_user_client(
    client: TestClient, data_dir: DataDir, create_user: CreateUser
) -> None:
    create_user("alice")
    # A confidential client may not use the password grant.
    form = {
        **admin_form(secret_key(data_dir)),
        "grant_type": "password",
        "username": "alice",
        "password": "alice-password",
    }
    assert_oauth_error(client.post(TOKEN_PATH, data=form), 400, "unauthorized_client")
    # The public client has no secret: it cannot use client credentials.
    form = {"grant_type": "client_credentials", "client_id": "sm-client"}
    assert_oauth_error(client.post(TOKEN_PATH, data=form), 401, "invalid_client")


def test_missing_user_credentials(client: TestClient) -> None:
    form = {"grant_type": "password", "client_id": "sm-client", "username": "alice"}
    assert_oauth_error(client.post(TOKEN_PATH, data=form), 400, "invalid_request")


# --- malformed requests: RFC 6749 errors, never problem+json ------------------------------


def test_malformed_requests_are_rfc6749_errors(client: TestClient, data_dir: DataDir) -> None:
    secret = secret_key(data_dir)
    assert_oauth_error(
        client.post(TOKEN_PATH, data={"client_id": "sm-admin", "client_secret": secret}),
        400,
        "invalid_request",
    )
    assert_oauth_error(
        client.post(TOKEN_PATH, data={**admin_form(secret), "grant_type": "authorization_code"}),
        400,
        "unsupported_grant_type",
    )
    unknown = assert_oauth_error(
        client.post(TOKEN_PATH, data={**admin_form(secret), "colour": "blue"}),
        400,
        "invalid_request",
    )
    assert "colour" in unknown["error_description"]
    assert_oauth_error(client.post(TOKEN_PATH, json=admin_form(secret)), 400, "invalid_request")
    too_long = assert_oauth_error(
        client.post(TOKEN_PATH, data={**admin_form(secret), "scope": "x" * 600}),
        400,
        "invalid_request",
    )
    assert "scope" in too_long["error_description"]


def test_authorization_header_problems(client: TestClient, data_dir: DataDir) -> None:
    basic = base64.b64encode(f"sm-admin:{secret_key(data_dir)}".encode()).decode()
    both = client.post(
        TOKEN_PATH,
        data=admin_form(secret_key(data_dir)),
        headers={"Authorization": f"Basic {basic}"},
    )
    assert_oauth_error(both, 400, "invalid_request")
    for header in ("Basic %%%", "Basic " + base64.b64encode(b"\xff\xfe").decode(), "Basic eA=="):
        response = client.post(
            TOKEN_PATH, data={"grant_type": "client_credentials"}, headers={"Authorization": header}
        )
        assert_oauth_error(response, 400, "invalid_request")
    # Another scheme is no client authentication: ignored, the body's credentials count.
    stray = client.post(
        TOKEN_PATH, data=admin_form(secret_key(data_dir)), headers={"Authorization": "Bearer x"}
    )
    assert stray.status_code == 200, stray.text
    stray = client.post(
        TOKEN_PATH, data={"grant_type": "client_credentials"}, headers={"Authorization": "Bearer x"}
    )
    assert_oauth_error(stray, 401, "invalid_client")


def test_plain_http_is_refused_except_on_loopback(app: AsyncApp, data_dir: DataDir) -> None:
    with app.test_client(base_url="http://registry.example") as client:
        body = assert_oauth_error(
            client.post(TOKEN_PATH, data=admin_form(secret_key(data_dir))), 400, "invalid_request"
        )
        assert "HTTPS" in body["error_description"]
    with app.test_client(base_url="http://127.0.0.1:8101") as client:
        assert client.post(TOKEN_PATH, data=admin_form(secret_key(data_dir))).status_code == 200


# --- backoff ----------------------------------------------------------------------------


def test_failed_attempts_back_off_exponentially(client: TestClient, data_dir: DataDir) -> None:
    wrong = admin_form("sms1.wrong.wrong")
    for _ in range(5):  # the free failures
        assert_oauth_error(client.post(TOKEN_PATH, data=wrong), 401, "invalid_client")
    assert_oauth_error(client.post(TOKEN_PATH, data=wrong), 401, "invalid_client")  # now 1 s

    # While waiting, even the right secret is turned away (and learns nothing).
    blocked = client.post(TOKEN_PATH, data=admin_form(secret_key(data_dir)))
    body = assert_oauth_error(blocked, 429, "slow_down")
    assert blocked.headers["retry-after"] == "1"
    assert "retry in 1 s" in body["error_description"]

    time.sleep(1.05)
    assert_oauth_error(client.post(TOKEN_PATH, data=wrong), 401, "invalid_client")  # now 2 s
    blocked = client.post(TOKEN_PATH, data=wrong)
    assert_oauth_error(blocked, 429, "slow_down")
    assert blocked.headers["retry-after"] == "2"

    time.sleep(2.05)
    ok = client.post(TOKEN_PATH, data=admin_form(secret_key(data_dir)))
    assert ok.status_code == 200, ok.text


def test_backoff_counts_per_address_across_clients(client: TestClient) -> None:
    # Six different client ids from one address: the address is what slows down.
    for n in range(6):
        form = {
            "grant_type": "client_credentials",
            "client_id": f"guess-{n}",
            "client_secret": "x" * 40,
        }
        assert_oauth_error(client.post(TOKEN_PATH, data=form), 401, "invalid_client")
    form = {"grant_type": "client_credentials", "client_id": "guess-new", "client_secret": "x" * 40}
    assert_oauth_error(client.post(TOKEN_PATH, data=form), 429, "slow_down")


def test_wrong_passwords_back_off_per_user(client: TestClient, create_user: CreateUser) -> None:
    create_user("alice")
    for _ in range(6):
        assert_oauth_error(
            client.post(TOKEN_PATH, data=password_form("alice", "guess-password")),
            400,
            "invalid_grant",
        )
    blocked = client.post(TOKEN_PATH, data=password_form("alice", "alice-password"))
    assert_oauth_error(blocked, 429, "slow_down")
    assert int(blocked.headers["retry-after"]) >= 1


# --- the contract -----------------------------------------------------------------------


def test_contract_declares_the_rfc6749_exception() -> None:
    spec = yaml.safe_load(spec_path("sm_registry", "registry.yaml").read_text())
    operation = spec["paths"][TOKEN_PATH]["post"]
    assert operation["security"] == []
    assert list(operation["requestBody"]["content"]) == ["application/x-www-form-urlencoded"]
    for status in ("400", "401", "429"):
        content = operation["responses"][status]["content"]
        assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/OAuthError"}
    assert spec["components"]["schemas"]["TokenRequest"]["additionalProperties"] is False
    # The scopes a role may hold are exactly the shared ones (service is never assignable).
    assert spec["components"]["schemas"]["Scope"]["enum"] == list(ALL_SCOPES)
    flows = spec["components"]["securitySchemes"]["oauth2"]["flows"]
    assert set(ALL_SCOPES) <= set(flows["password"]["scopes"])

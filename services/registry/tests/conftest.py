"""What the registry's tests share: the app on the test's data directory and Redis.

``client`` is Connexion's test client over HTTPS (Authlib issues tokens over
HTTPS or to loopback only; the registry listens with TLS). ``admin``,
``operator`` and ``viewer`` are bearer headers of the built-in roles (subject
``<role>-user``), ``service`` those of the core's own services. ``enroll``,
``create_user`` and ``sign_in`` do the setup steps many tests start with, and
assert that they worked; ``assert_problem`` checks a problem+json answer.
Test modules cannot import from here: they type the callable fixtures
``Callable[..., <what it returns>]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from connexion import AsyncApp
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from starlette.testclient import TestClient

from sm_registry import RegistrySettings, create_app
from sm_registry.oauth import TOKEN_PATH
from sm_shared.audit import AuditEvent
from sm_shared.datadir import DataDir
from sm_shared.scopes import BUILTIN_ROLES, NODES_READ, SERVICE
from sm_shared.streams import AUDIT_STREAM
from sm_shared.tokens import issue_access_token

BASE_URL = "https://testserver"
FACTS: dict[str, Any] = {
    "hostname": "web-1",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "kernel": "6.1.0-18-amd64",
    "arch": "x86_64",
    "cpu_model": "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
    "cpu_count": 4,
    "memory_total": 8_331_534_336,
    "addresses": [{"interface": "eth0", "family": "ipv4", "address": "10.0.0.11"}],
    "agent_version": "0.1.0",
    "boot_id": "2f0c1e1a-6f59-4f5e-9a43-3d8a4a1f7c22",
}


@pytest.fixture
def settings(data_dir: DataDir, redis_url: str) -> RegistrySettings:
    """The registry's settings for this test (a module may override it to change some)."""
    return RegistrySettings(data_dir=data_dir.root, redis_url=redis_url, validate_responses=True)


@pytest.fixture
def app(settings: RegistrySettings) -> AsyncApp:
    return create_app(settings)


@pytest.fixture
def client(app: AsyncApp) -> Iterator[TestClient]:
    with app.test_client(base_url=BASE_URL) as test_client:
        yield test_client


def _bearer(data: DataDir, role: str, scopes: tuple[str, ...]) -> dict[str, str]:
    token = issue_access_token(
        data, subject=f"{role}-user", client_id="tests", scopes=scopes, ttl=600
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(data_dir: DataDir) -> dict[str, str]:
    return _bearer(data_dir, "admin", BUILTIN_ROLES["admin"])


@pytest.fixture
def operator(data_dir: DataDir) -> dict[str, str]:
    return _bearer(data_dir, "operator", BUILTIN_ROLES["operator"])


@pytest.fixture
def viewer(data_dir: DataDir) -> dict[str, str]:
    return _bearer(data_dir, "viewer", BUILTIN_ROLES["viewer"])


@pytest.fixture
def service(data_dir: DataDir) -> dict[str, str]:
    """What the built-in service client holds that matters to the registry."""
    return _bearer(data_dir, "service", (SERVICE, NODES_READ))


@pytest.fixture
def store(redis_url: str) -> Iterator[Redis]:
    """A blocking Redis client on the test's database (strings, not bytes)."""
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[AsyncRedis]:
    """An asyncio Redis client on the test's database (bytes, as the registry reads it)."""
    client = AsyncRedis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def stream(store: Redis) -> Callable[[str], list[dict[str, str]]]:
    """``stream(name)``: the fields of every entry of a Redis stream, oldest first."""

    def entries(name: str) -> list[dict[str, str]]:
        found = store.xrange(name)
        assert isinstance(found, list)  # redis-py types sync and async alike
        return [fields for _, fields in found]

    return entries


@pytest.fixture
def audit_events(
    stream: Callable[[str], list[dict[str, str]]],
) -> Callable[[], list[AuditEvent]]:
    """``audit_events()``: the audit events emitted so far, oldest first."""
    return lambda: [AuditEvent.from_fields(fields) for fields in stream(AUDIT_STREAM)]


@pytest.fixture
def facts() -> dict[str, Any]:
    """Facts an agent reports (host ``web-1``); ``enroll`` sets the host name it is given."""
    return dict(FACTS)


@pytest.fixture
def enroll_body(facts: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """``enroll_body(key, hostname="web-1", **extra)``: an enrollment request body.

    Its machine id is ``machine-<hostname>``; ``key=None`` leaves the key out.
    """

    def body(key: str | None, hostname: str = "web-1", **extra: Any) -> dict[str, Any]:
        built: dict[str, Any] = {
            "machine_id": f"machine-{hostname}",
            "facts": {**facts, "hostname": hostname},
            **extra,
        }
        if key is not None:
            built["key"] = key
        return built

    return body


@pytest.fixture
def enroll(
    client: TestClient, data_dir: DataDir, enroll_body: Callable[..., dict[str, Any]]
) -> Callable[..., dict[str, Any]]:
    """``enroll(hostname)``: enroll a node with the enrollment key; the 201 answer."""
    key = data_dir.enrollment_key.read_text().strip()

    def enrolled(hostname: str) -> dict[str, Any]:
        response = client.post("/api/v1/enroll", json=enroll_body(key, hostname))
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return enrolled


@pytest.fixture
def create_user(client: TestClient, admin: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """``create_user(username, role="viewer")``: a user whose password is ``<username>-password``."""

    def created(username: str, role: str = "viewer") -> dict[str, Any]:
        response = client.post(
            "/api/v1/users",
            json={"username": username, "password": f"{username}-password", "role": role},
            headers=admin,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return created


@pytest.fixture
def sign_in(client: TestClient) -> Callable[..., dict[str, Any]]:
    """``sign_in(username, password)``: the token endpoint's answer to the password grant."""

    def signed_in(username: str, password: str) -> dict[str, Any]:
        form = {"username": username, "password": password}
        response = client.post(
            TOKEN_PATH, data={"grant_type": "password", "client_id": "sm-client", **form}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return signed_in


def _assert_problem(response: Any, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body
    return body


@pytest.fixture
def assert_problem() -> Callable[..., dict[str, Any]]:
    """``assert_problem(response, status, *words)``: a problem of that status whose
    detail names every word; its body."""
    return _assert_problem

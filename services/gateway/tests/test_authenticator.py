"""Credential checks and the service token against the real registry."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sm_gateway.authenticator import Authenticator, NodeRefused
from sm_shared.datadir import DataDir
from sm_shared.service_token import RegistryUnavailable, ServiceToken
from sm_shared.tokens import TokenVerifier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http(registry: Any, data_dir: DataDir) -> AsyncIterator[httpx.AsyncClient]:
    verify = ssl.create_default_context(cafile=str(data_dir.ca_cert))
    async with httpx.AsyncClient(
        base_url=registry.origin, verify=verify, trust_env=False
    ) as client:
        yield client


async def test_the_service_token_has_the_service_scope(
    http: httpx.AsyncClient, data_dir: DataDir
) -> None:
    token = await ServiceToken(http, data_dir.service_secret).get()
    claims = TokenVerifier(data_dir).verify(token)
    assert "service" in claims.scopes
    assert claims.client_id == "sm-services"


async def test_the_service_token_is_cached_then_refreshed_before_expiry(
    http: httpx.AsyncClient, data_dir: DataDir
) -> None:
    clock = Clock()
    tokens = ServiceToken(http, data_dir.service_secret, clock=clock)
    first = await tokens.get()
    assert await tokens.get() == first
    claims = TokenVerifier(data_dir).verify(first).raw
    lifetime = claims["exp"] - claims["iat"]
    clock.now += lifetime * 0.85  # past the refresh point, before expiry
    assert await tokens.get() != first


async def test_a_wrong_service_secret_is_registry_unavailable(
    http: httpx.AsyncClient, tmp_path: Any
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("wrong")
    with pytest.raises(RegistryUnavailable, match="refused"):
        await ServiceToken(http, secret).get()


async def test_known_credentials_are_cached_refusals_are_not(
    http: httpx.AsyncClient, data_dir: DataDir, registry: Any
) -> None:
    clock = Clock()
    node = registry.enroll()
    auth = Authenticator(http, ServiceToken(http, data_dir.service_secret), 30.0, clock=clock)

    identity = await auth.authenticate(node["credential"])
    assert identity.node_id == node["node_id"]
    assert identity.name == "machine-1"  # a new node is named after its host
    assert identity.labels == {}
    await auth.authenticate(node["credential"])
    assert auth.registry_calls == 1
    clock.now += 31
    await auth.authenticate(node["credential"])
    assert auth.registry_calls == 2

    wrong = node["credential"][:-4] + "AAAA"
    for _ in range(2):
        with pytest.raises(NodeRefused) as caught:
            await auth.authenticate(wrong)
        assert caught.value.status == 401
    assert auth.registry_calls == 4


async def test_malformed_credentials_never_reach_the_registry(
    http: httpx.AsyncClient, data_dir: DataDir
) -> None:
    auth = Authenticator(http, ServiceToken(http, data_dir.service_secret), 30.0)
    for text in ("", "smn1", "smn1..secret", "sme1.node.secretsecretsecretsecret", "smn1.a.b c"):
        with pytest.raises(NodeRefused):
            await auth.authenticate(text)
    assert auth.registry_calls == 0


async def test_a_revoked_node_is_403(
    http: httpx.AsyncClient, data_dir: DataDir, registry: Any
) -> None:
    node = registry.enroll()
    registry.delete_node(node["node_id"])
    auth = Authenticator(http, ServiceToken(http, data_dir.service_secret), 30.0)
    with pytest.raises(NodeRefused) as caught:
        await auth.authenticate(node["credential"])
    assert caught.value.status == 403

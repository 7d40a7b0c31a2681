"""Who a node credential belongs to, as the registry says.

``POST /api/v1/nodes/authenticate`` (scope ``service``) ``{"credential"}`` →
200 ``{"node_id", "name", "group", "labels"}``, 401 unknown or bad, 403
revoked or deleted. Successful answers are reused for a short time, keyed by
the credential's SHA-256, so a fleet reconnecting at once does not query the
registry once per attempt. Refusals are not cached: a node enrolled again
must be able to connect at once. A revoked node's entries are dropped as soon
as the revocation is read (``forget_node``), on every gateway.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from sm_shared.service_token import RegistryUnavailable, ServiceToken

AUTHENTICATE_PATH: Final = "/api/v1/nodes/authenticate"
MAX_CACHED: Final = 20_000
CREDENTIAL_FORMAT: Final = re.compile(r"smn1\.[A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{16,256}")


class NodeRefused(Exception):
    """The registry refuses the credential: 401 (unknown, malformed) or 403 (revoked)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    name: str
    group: str | None
    labels: dict[str, str] = field(default_factory=dict)


def _identity(body: Any) -> NodeIdentity:
    try:
        labels = body.get("labels") or {}
        group = body.get("group")
        return NodeIdentity(
            node_id=str(body["node_id"]),
            name=str(body.get("name") or body["node_id"]),
            group=None if group is None else str(group),
            labels={str(k): str(v) for k, v in labels.items()},
        )
    except (AttributeError, KeyError, TypeError) as exc:
        raise RegistryUnavailable("the registry answered an unusable identity") from exc


def _detail(response: httpx.Response, fallback: str) -> str:
    try:
        body = response.json()
    except ValueError:
        return fallback
    return str(body.get("detail") or fallback) if isinstance(body, dict) else fallback


class Authenticator:
    def __init__(
        self,
        http: httpx.AsyncClient,
        token: ServiceToken,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._token = token
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, NodeIdentity]] = OrderedDict()
        self.registry_calls = 0

    async def authenticate(self, credential: str) -> NodeIdentity:
        """The node holding ``credential``; NodeRefused or RegistryUnavailable otherwise."""
        if not CREDENTIAL_FORMAT.fullmatch(credential):
            raise NodeRefused(401, "not a node credential (smn1.<node>.<secret>)")
        key = hashlib.sha256(credential.encode()).digest()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(key)
            return cached[1]
        identity = await self._ask_registry(credential)
        if self._cache_seconds > 0:
            self._cache[key] = (self._clock() + self._cache_seconds, identity)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        return identity

    def forget(self, credential: str) -> None:
        self._cache.pop(hashlib.sha256(credential.encode()).digest(), None)

    def forget_node(self, node_id: str) -> int:
        """Drop every cached success of ``node_id`` (it was revoked); how many were dropped.

        A scan of the cache: revocations are rare, and the cache is bounded.
        """
        stale = [key for key, (_, who) in self._cache.items() if who.node_id == node_id]
        for key in stale:
            del self._cache[key]
        return len(stale)

    async def _ask_registry(self, credential: str) -> NodeIdentity:
        self.registry_calls += 1
        try:
            response = await self._token.send(
                self._http, "POST", AUTHENTICATE_PATH, json={"credential": credential}
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"node authentication failed: {exc!r}") from exc
        if response.status_code == 200:
            try:
                return _identity(response.json())
            except ValueError as exc:
                raise RegistryUnavailable("the registry answered invalid JSON") from exc
        if response.status_code in (401, 403):
            raise NodeRefused(response.status_code, _detail(response, "the credential was refused"))
        raise RegistryUnavailable(f"node authentication: HTTP {response.status_code}")

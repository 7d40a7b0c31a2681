"""Agents' facts reach the registry (``PUT /api/v1/nodes/{id}/facts``), off the hot path.

A session reports the facts of every ``hello`` and ``facts`` message; only
facts whose digest (SHA-256 of the canonical JSON) differs from the last one
stored are queued. A few worker tasks send them; a node queued twice is sent
once, with its newest facts. The digests stored live in memory and in the
Redis hash ``facts-digest`` (so a fleet reconnecting to a restarted or other
gateway does not rewrite every node). A failure is logged and counted; the
digest is not recorded, so the next hello or change tries again. Heartbeats
never wait for any of this.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Final

import httpx
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sm_gateway.instruments import Instruments
from sm_shared.service_token import RegistryUnavailable, ServiceToken

FACTS_DIGESTS: Final = "facts-digest"
WORKERS: Final = 4

log = logging.getLogger(__name__)


def facts_digest(facts: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(facts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def facts_path(node_id: str) -> str:
    return f"/api/v1/nodes/{node_id}/facts"


class FactsReporter:
    def __init__(
        self,
        redis: Redis,
        registry: httpx.AsyncClient,
        token: ServiceToken,
        instruments: Instruments,
    ) -> None:
        self._redis = redis
        self._registry = registry
        self._token = token
        self._instruments = instruments
        self._stored: dict[str, str] = {}
        self._waiting: dict[str, tuple[dict[str, Any], str]] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()

    def report(self, node_id: str, facts: dict[str, Any]) -> None:
        """Queue ``facts`` for the registry unless they are what it holds (never blocks)."""
        digest = facts_digest(facts)
        if self._stored.get(node_id) == digest:
            return
        if node_id not in self._waiting:
            self._queue.put_nowait(node_id)
        self._waiting[node_id] = (facts, digest)

    def forget(self, node_id: str) -> None:
        """The node is gone (revoked): drop what is known of it."""
        self._stored.pop(node_id, None)
        self._waiting.pop(node_id, None)

    async def run(self) -> None:
        """Send queued facts until cancelled (``WORKERS`` at a time)."""
        async with asyncio.TaskGroup() as group:
            for _ in range(WORKERS):
                group.create_task(self._work())

    async def _work(self) -> None:
        while True:
            node_id = await self._queue.get()
            waiting = self._waiting.pop(node_id, None)
            if waiting is None:
                continue
            facts, digest = waiting
            try:
                outcome = await self._send(node_id, facts, digest)
            except (RegistryUnavailable, httpx.HTTPError, RedisError, OSError) as exc:
                outcome = "failed"
                log.warning(
                    "facts of node %s not stored (retried on the next change): %r", node_id, exc
                )
            self._instruments.facts_updates.labels(outcome).inc()

    async def _send(self, node_id: str, facts: dict[str, Any], digest: str) -> str:
        stored = await self._redis.hget(FACTS_DIGESTS, node_id)  # type: ignore[misc]
        if stored is not None and stored.decode() == digest:
            self._stored[node_id] = digest
            return "unchanged"
        response = await self._token.send(self._registry, "PUT", facts_path(node_id), json=facts)
        if response.status_code != 204:
            raise RegistryUnavailable(
                f"PUT facts: HTTP {response.status_code} {response.text[:200]}"
            )
        await self._redis.hset(FACTS_DIGESTS, node_id, digest)  # type: ignore[misc]
        self._stored[node_id] = digest
        return "stored"

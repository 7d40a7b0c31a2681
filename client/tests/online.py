"""Waiting until nodes of the real core are online."""

from __future__ import annotations

import asyncio
import time

from sm_client.api import CoreApi


async def online_nodes(api: CoreApi, count: int = 1, within: float = 30) -> list[str]:
    """The ids of the online nodes (sorted) once at least ``count`` are online."""
    deadline = time.monotonic() + within
    while True:
        page = await api.call("GET", "/api/v1/nodes", params={"status": "online", "limit": 10})
        if len(page["items"]) >= count:
            return sorted(str(n["id"]) for n in page["items"])
        assert time.monotonic() < deadline, f"fewer than {count} nodes online after {within:g} s"
        await asyncio.sleep(0.2)


async def local_node(api: CoreApi) -> str:
    """The id of ``up``'s local agent once it is online (the module's only node)."""
    return (await online_nodes(api, 1))[0]

"""Two apps answering the same secured GET, for ``api_overhead.py``.

``starlette_app``: a bare Starlette route with the same JWT check (the raw
baseline). ``connexion_app``: the real service frame (``sm_shared.api_app``)
with strict request validation, scope enforcement and problem handlers;
``connexion_untuned_app``: the same without ``sm_shared.connexion_tuning``.
Both read the data directory from ``SM_DATA_DIR``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import connexion
from harness import bearer_refusal
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sm_shared import connexion_tuning
from sm_shared.api_app import ServiceState, build_api_app
from sm_shared.datadir import DataDir
from sm_shared.tokens import TokenVerifier

ITEMS = [{"id": f"node-{i}", "name": f"node-{i}", "status": "online"} for i in range(10)]


def _data() -> DataDir:
    return DataDir(Path(os.environ["SM_DATA_DIR"]))


async def ping(limit: int = 100) -> dict[str, Any]:
    return {"items": ITEMS[:limit], "total": len(ITEMS)}


def starlette_app() -> Starlette:
    verifier = TokenVerifier(_data())

    async def handler(request: Request) -> Response:
        refusal = bearer_refusal(request, verifier, "nodes:read")
        if refusal is not None:
            return refusal
        limit = int(request.query_params.get("limit", "100"))
        return JSONResponse(await ping(limit))

    return Starlette(routes=[Route("/api/v1/ping", handler)])


def connexion_untuned_app() -> connexion.AsyncApp:
    """The frame without ``sm_shared.connexion_tuning`` (to measure what it wins)."""
    connexion_tuning._applied = True  # apply() now returns at once: nothing is patched
    return connexion_app()


def connexion_app() -> connexion.AsyncApp:
    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        yield

    return build_api_app(
        name="overhead",
        spec=Path(__file__).with_name("overhead_spec.yaml"),
        package="overhead_apps",
        verifier=TokenVerifier(_data()),
        state=ServiceState(name="bench", readiness={}, metrics=CollectorRegistry()),
        lifespan=lifespan,
        max_body_bytes=1_048_576,
        validate_responses=False,
    )

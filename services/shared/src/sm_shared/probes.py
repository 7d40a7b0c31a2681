"""Health, readiness and Prometheus metrics: handlers every service's document names.

They are referenced in full (``sm_shared.probes.healthz``) from each OpenAPI
document and read the service's :class:`~sm_shared.api_app.ServiceState`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from connexion import request
from connexion.lifecycle import ConnexionResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sm_shared.api_app import ServiceState
from sm_shared.problems import problem_response

CHECK_TIMEOUT = 2.0


def _state() -> ServiceState:
    state = request.state.service
    assert isinstance(state, ServiceState)
    return state


async def healthz() -> dict[str, Any]:
    return {"status": "ok", "service": _state().name}


async def readyz() -> Any:
    state = _state()
    failures: dict[str, str] = {}
    for check_name, check in state.readiness.items():
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT)
        except Exception as exc:  # any failure means "not ready"; the reason is reported
            failures[check_name] = f"{type(exc).__name__}: {exc}"
    if failures:
        response = problem_response(
            503, "Service Unavailable", "a dependency is unreachable", checks=failures
        )
        return ConnexionResponse(
            status_code=503, body=response.body, content_type=response.media_type
        )
    return {"status": "ready", "service": state.name, "checks": sorted(state.readiness)}


async def metrics() -> ConnexionResponse:
    return ConnexionResponse(
        status_code=200,
        body=generate_latest(_state().metrics),
        content_type=CONTENT_TYPE_LATEST,
    )

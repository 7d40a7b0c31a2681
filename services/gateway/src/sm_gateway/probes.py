"""Plain HTTP answers of the gateway (``openapi/gateway.yaml``), built as websockets responses.

``/healthz``, ``/readyz`` (Redis reachable), ``/metrics`` (Prometheus), and
problem+json refusals for everything that is not a WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
from typing import Any, Final

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from redis.asyncio import Redis
from websockets.datastructures import Headers
from websockets.http11 import Response

SERVICE: Final = "gateway"
CHECK_TIMEOUT: Final = 2.0
PROBLEM: Final = "application/problem+json"


def respond(
    status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> Response:
    code = http.HTTPStatus(status)
    all_headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            # websockets answers one plain HTTP request per connection, then closes it.
            ("Connection", "close"),
            *(headers or {}).items(),
        ]
    )
    return Response(code.value, code.phrase, all_headers, body)


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {
        "type": "about:blank",
        "title": http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return respond(status, orjson.dumps(body), PROBLEM, headers)


def healthz() -> Response:
    return respond(200, orjson.dumps({"status": "ok", "service": SERVICE}), "application/json")


async def readyz(redis: Redis) -> Response:
    try:
        await asyncio.wait_for(redis.ping(), CHECK_TIMEOUT)
    except Exception as exc:  # any failure means "not ready"; the reason is reported
        return problem(
            503, "a dependency is unreachable", checks={"redis": f"{type(exc).__name__}: {exc}"}
        )
    body = {"status": "ready", "service": SERVICE, "checks": ["redis"]}
    return respond(200, orjson.dumps(body), "application/json")


def metrics(registry: CollectorRegistry) -> Response:
    return respond(200, generate_latest(registry), CONTENT_TYPE_LATEST)

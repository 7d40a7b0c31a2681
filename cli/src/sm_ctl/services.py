"""Running one service in this process: what ``smctl serve`` (and each child of ``up``) does.

HTTP services run under uvicorn; ``api`` is the registry, metrics and commands
apps behind one :class:`~sm_ctl.router.ServiceRouter`. TLS uses the data
directory's server certificate unless the caller turns it off (behind a proxy
that terminates TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.types import ASGIApp

from sm_commands import CommandsSettings
from sm_commands import create_app as create_commands_app
from sm_ctl.catalog import HTTP_APIS, Listener, Service
from sm_ctl.router import ServiceRouter
from sm_metrics import MetricsSettings
from sm_metrics import create_app as create_metrics_app
from sm_registry import RegistrySettings
from sm_registry import create_app as create_registry_app
from sm_shared.datadir import DataDir

# How long uvicorn lets open requests finish after SIGTERM before it closes them.
GRACEFUL_SHUTDOWN_SECONDS = 5


def api_app(service: Service, data_dir: Path) -> ASGIApp:
    """The ASGI app of one HTTP service, built from its settings (``SM_`` environment)."""
    app: ASGIApp
    if service is Service.REGISTRY:
        app = create_registry_app(RegistrySettings(data_dir=data_dir))
    elif service is Service.METRICS:
        app = create_metrics_app(MetricsSettings(data_dir=data_dir))
    elif service is Service.COMMANDS:
        app = create_commands_app(CommandsSettings(data_dir=data_dir))
    else:
        raise ValueError(f"{service} is not an HTTP API")
    return app


def combined_app(data_dir: Path) -> ServiceRouter:
    """The registry, metrics and commands apps behind one router (one combined lifespan).

    Requests for the gateway's paths are answered with a problem naming where
    the gateway is (``SM_GATEWAY_URL``, as the registry tells agents).
    """
    gateway = urlsplit(RegistrySettings(data_dir=data_dir).gateway_url)
    return ServiceRouter(
        {service.value: api_app(service, data_dir) for service in HTTP_APIS},
        elsewhere={"gateway": f"{gateway.scheme}://{gateway.netloc}"},
    )


def serve_http(app: ASGIApp, listener: Listener, data: DataDir) -> None:
    """Serve ``app`` with uvicorn until SIGTERM/SIGINT."""
    tls = {}
    if listener.tls:
        tls = {
            "ssl_certfile": str(data.server_cert),
            "ssl_keyfile": str(data.server_key),
        }
    config = uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        log_level=logging.INFO,
        **tls,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        # uvicorn logs why (port in use, lifespan failure) and returns; make it an error.
        raise SystemExit(3)


def serve_gateway(listener: Listener, data: DataDir) -> None:
    """Run the gateway (``sm_gateway.server.serve``) until SIGTERM/SIGINT."""
    from sm_gateway.server import serve
    from sm_gateway.settings import GatewaySettings

    if not listener.tls:
        raise SystemExit(
            "the gateway always serves TLS (agents verify it with the core CA); drop --no-tls"
        )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = GatewaySettings(data_dir=data.root, host=listener.host, port=listener.port)
    asyncio.run(until_signalled(serve(settings)))


async def until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it returns or SIGTERM/SIGINT arrives (then cancel it)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task

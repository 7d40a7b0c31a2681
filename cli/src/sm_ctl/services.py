"""Running an HTTP service in this process: ``smctl serve api|registry|metrics|commands``.

They run under uvicorn; ``api`` is the registry, metrics and commands apps
behind one :class:`~sm_ctl.router.ServiceRouter`. TLS uses the data
directory's server certificate unless the caller turns it off (behind a proxy
that terminates TLS). The gateway runs from :mod:`sm_ctl.gateway`, the worker
from :mod:`sm_ctl.worker`.
"""

from __future__ import annotations

import logging
from pathlib import Path
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

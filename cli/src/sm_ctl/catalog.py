"""What ``smctl serve`` can run, on which port by default, and what it needs first.

Kept apart from :mod:`sm_ctl.services` (which imports every service and
Connexion) so that quick commands start quickly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sm_shared.datadir import DataDir
from sm_shared.routes import DEFAULT_PORTS


class Service(StrEnum):
    """What ``smctl serve`` can run. ``api`` is the three HTTP APIs in one process."""

    API = "api"
    REGISTRY = "registry"
    METRICS = "metrics"
    COMMANDS = "commands"
    GATEWAY = "gateway"
    WORKER = "worker"
    # The metrics stream's consumer (heartbeats → the metrics database); no listener.
    METRICS_INGEST = "metrics-ingest"
    # The results stream's consumer and the audit writer (→ the commands database); no listener.
    COMMANDS_CONSUMER = "commands-consumer"


HTTP_APIS: tuple[Service, ...] = (Service.REGISTRY, Service.METRICS, Service.COMMANDS)
# The all-in-one API's port (``up --port``); the gateway of ``up`` takes the next one.
API_PORT = 8700


def default_port(service: Service) -> int:
    """The port a service listens on when run alone (``sm_shared.routes.DEFAULT_PORTS``)."""
    if service is Service.API:
        return API_PORT
    if service in (Service.WORKER, Service.METRICS_INGEST, Service.COMMANDS_CONSUMER):
        return 0
    port: int = DEFAULT_PORTS[service.value]  # type: ignore[index]
    return port


@dataclass(frozen=True)
class Listener:
    """Where a served process listens, and whether it speaks TLS."""

    host: str
    port: int
    tls: bool


class MissingKeyMaterial(RuntimeError):
    """The data directory has not been initialised (no CA, keys or certificate)."""


def require_key_material(data: DataDir) -> None:
    missing = [path.name for path in data.key_files if not path.exists()]
    if missing:
        raise MissingKeyMaterial(
            f"{data.root} has no key material ({', '.join(missing)} missing): "
            "run `smctl init` (or `smctl up`) on it first"
        )

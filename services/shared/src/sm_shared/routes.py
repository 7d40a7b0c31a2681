"""The one route table: path prefix → service.

It is the single source for the all-in-one router (``smctl up``), the reverse
proxy configuration (``deploy/nginx.conf``) and the Kubernetes Ingress; tests
check that those files agree with it. The longest matching prefix wins.

The web client (``sm-client --web``) is not in :data:`ROUTES`: it is not a
core service (plain HTTP, no ``/readyz``, no ``smctl serve``), and ``smctl up``
serves it on a port of its own, so up's router keeps answering 404 for paths
no service claims. Behind an edge (nginx, the Ingress) it is the fallback:
:data:`WEB_PREFIX` (every path the table does not claim) goes to it.
"""

from typing import Final, Literal

Service = Literal["registry", "metrics", "commands", "gateway"]

SERVICES: Final[tuple[Service, ...]] = ("registry", "metrics", "commands", "gateway")

ROUTES: Final[tuple[tuple[str, Service], ...]] = (
    ("/agent/", "gateway"),
    ("/events/", "gateway"),
    ("/api/v1/metrics", "metrics"),
    ("/api/v1/commands", "commands"),
    ("/api/v1/audit", "commands"),
    ("/api/v1/", "registry"),
    ("/.well-known/", "registry"),
    ("/ca.pem", "registry"),
)

# Ports each service listens on when run alone (containers, Kubernetes).
DEFAULT_PORTS: Final[dict[Service, int]] = {
    "registry": 8101,
    "metrics": 8102,
    "commands": 8103,
    "gateway": 8104,
}


def service_for(path: str) -> Service | None:
    """The service that serves ``path``, or None when no route matches."""
    best: tuple[int, Service] | None = None
    for prefix, service in ROUTES:
        if path.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), service)
    return None if best is None else best[1]


# The web client behind an edge: the fallback prefix, its host name in the
# container deployment and the port it listens on there (``sm-client --web
# --port``). Its WebSocket is ``/ws``; everything else under "/" is its app.
WEB_PREFIX: Final = "/"
WEB_CLIENT: Final = "web"
WEB_PORT: Final = 8105

"""The one route table: path prefix → service.

It is the single source for the all-in-one router (``smctl up``), the reverse
proxy configuration (``deploy/nginx.conf``) and the Kubernetes Ingress; tests
check that those files agree with it. The longest matching prefix wins.
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

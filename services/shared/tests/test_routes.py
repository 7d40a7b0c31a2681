"""The route table: path prefix → service, longest prefix first."""

from __future__ import annotations

import pytest

from sm_shared import routes
from sm_shared.routes import DEFAULT_PORTS, ROUTES, SERVICES, service_for


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/nodes", "registry"),
        ("/api/v1/nodes/n1", "registry"),
        ("/api/v1/oauth/token", "registry"),
        ("/api/v1/enroll", "registry"),
        ("/api/v1/metrics", "metrics"),
        ("/api/v1/metrics/nodes/n1", "metrics"),
        ("/api/v1/commands", "commands"),
        ("/api/v1/commands/c1/executions", "commands"),
        ("/api/v1/audit", "commands"),
        ("/api/v1/audit/verify", "commands"),
        ("/agent/ws", "gateway"),
        ("/events/ws", "gateway"),
        ("/.well-known/jwks.json", "registry"),
        ("/ca.pem", "registry"),
    ],
)
def test_longest_prefix_wins(path: str, service: str) -> None:
    assert service_for(path) == service


@pytest.mark.parametrize("path", ["", "/", "/healthz", "/api/v2/nodes", "/agent", "/events"])
def test_unrouted_paths(path: str) -> None:
    assert service_for(path) is None


def test_order_of_the_table_does_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = ["/api/v1/metrics/x", "/api/v1/commands", "/api/v1/audit", "/api/v1/nodes"]
    expected = [service_for(p) for p in paths]
    assert expected == ["metrics", "commands", "commands", "registry"]
    monkeypatch.setattr(routes, "ROUTES", tuple(reversed(ROUTES)))
    assert [service_for(p) for p in paths] == expected


def test_table_is_consistent() -> None:
    prefixes = [p for p, _ in ROUTES]
    assert len(set(prefixes)) == len(prefixes)
    assert all(p.startswith("/") for p in prefixes)
    assert {s for _, s in ROUTES} == set(SERVICES) == set(DEFAULT_PORTS)
    assert len(set(DEFAULT_PORTS.values())) == len(DEFAULT_PORTS)

"""The gateway's Prometheus metrics, in a registry of its own (no global collisions)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class Instruments:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.connections = Gauge(
            "gateway_agent_connections", "Agent connections held open", registry=self.registry
        )
        self.handshakes = Counter(
            "gateway_agent_handshakes",
            "Agent handshakes, by outcome (accepted, unauthorized, forbidden, unavailable)",
            ["outcome"],
            registry=self.registry,
        )
        self.messages = Counter(
            "gateway_agent_messages",
            "Valid messages received from agents, by type",
            ["type"],
            registry=self.registry,
        )
        self.closes = Counter(
            "gateway_agent_closes",
            "Agent connections the gateway closed, by close code",
            ["code"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "gateway_http_requests",
            "Plain HTTP requests answered (probes, metrics, refusals), by path and status",
            ["path", "status"],
            registry=self.registry,
        )

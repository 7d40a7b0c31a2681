"""The gateway's Prometheus metrics, in a registry of its own (no global collisions)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
FLUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


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
        # The batch pipeline (agents → the metrics and results streams).
        self.batch_size = Histogram(
            "gateway_heartbeat_batch_size",
            "Entries (heartbeats, reports, connections) written per pipelined batch",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.flush_seconds = Histogram(
            "gateway_heartbeat_flush_seconds",
            "Time to write one batch to Redis (one pipeline round trip)",
            buckets=FLUSH_BUCKETS,
            registry=self.registry,
        )
        self.heartbeats_written = Counter(
            "gateway_heartbeats_written",
            "Heartbeats appended to the metrics stream",
            registry=self.registry,
        )
        self.batch_failures = Counter(
            "gateway_heartbeat_batch_failures",
            "Batches Redis did not take (their connections were closed with 1011, nothing acked)",
            registry=self.registry,
        )
        self.pending = Gauge(
            "gateway_heartbeats_pending",
            "Entries (heartbeats, reports, connections) received and not yet written",
            registry=self.registry,
        )
        self.pending_bytes = Gauge(
            "gateway_pending_bytes",
            "Bytes of the frames received and not yet written",
            registry=self.registry,
        )
        self.results_written = Counter(
            "gateway_results_written",
            "Entries appended to the results stream, by type (report, online)",
            ["type"],
            registry=self.registry,
        )
        self.acks = Counter(
            "gateway_agent_acks", "Ack messages sent to agents", registry=self.registry
        )
        self.result_acks = Counter(
            "gateway_result_acks", "result_ack messages sent to agents", registry=self.registry
        )
        # Facts, deliveries, revocations.
        self.facts_updates = Counter(
            "gateway_facts_updates",
            "Facts sent to the registry, by outcome (stored, unchanged, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "gateway_inbox_deliveries",
            "Inbox entries handled, by kind (unknown kinds counted as 'unknown')",
            ["kind"],
            registry=self.registry,
        )
        self.inbox_drops = Counter(
            "gateway_inbox_drops",
            "Deliveries not sent, by kind and reason (not_held: the node is not connected here;"
            " invalid: not a valid message of its kind; full: the agent's send queue is full)."
            " The commands service's reconciliation sends them again where the node is",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.revocations = Counter(
            "gateway_revocations",
            "Revocations read from the revocations stream (credential forgotten)",
            registry=self.registry,
        )
        # Client event stream.
        self.event_clients = Gauge(
            "gateway_event_clients", "Client event connections held open", registry=self.registry
        )
        self.event_messages = Counter(
            "gateway_event_messages",
            "Messages queued to event clients (events, metrics, answers)",
            registry=self.registry,
        )
        self.event_drops = Counter(
            "gateway_event_drops",
            "Event clients the gateway disconnected, by reason (slow, expired, feed_lost)",
            ["reason"],
            registry=self.registry,
        )
        self.event_refusals = Counter(
            "gateway_event_refusals",
            "Subscribe requests refused, by status (400 too many topics, 403 scope)",
            ["status"],
            registry=self.registry,
        )

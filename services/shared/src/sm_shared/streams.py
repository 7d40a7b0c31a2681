"""Redis key and stream names shared by every service (DESIGN.md, Data ownership)."""

from typing import Final

# Gateways → metrics: one entry per heartbeat, fields ``n`` (node id), ``h`` (the
# heartbeat message exactly as the agent sent it and the gateway validated it,
# JSON bytes) and ``r`` (receive time at the gateway, Unix seconds as text).
METRICS_STREAM: Final = "metrics"
METRICS_GROUP: Final = "metrics"
RESULTS_STREAM: Final = "results"
AUDIT_STREAM: Final = "audit"
EVENTS_CHANNEL: Final = "events"
# Registry → gateways: a node deleted or replaced; its connection must close (fields
# ``node_id``, ``reason`` = deleted|replaced, ``at``).
REVOCATIONS_STREAM: Final = "revocations"
# Set by every metrics ingest process while it runs (a TTL of a few seconds):
# `up` and the container health check read it, like arq's health-check key.
METRICS_INGEST_HEALTH_KEY: Final = "metrics-ingest:health"
# Hash node id → Unix time of its last heartbeat (gateways write, the registry reads).
LAST_SEEN_HASH: Final = "last-seen"


def live_metrics_channel(node_id: str) -> str:
    """Pub/sub channel of one node's heartbeats as they arrive (gateways publish
    ``{"type": "metrics", "node_id", "received_at", "heartbeat": {...}}``)."""
    return f"live:{node_id}"


def gateway_inbox(gateway_id: str) -> str:
    """The stream of deliveries to the agents that gateway ``gateway_id`` holds."""
    return f"gateway:{gateway_id}:inbox"


def route_key(node_id: str) -> str:
    """The key naming the gateway that holds the node's connection."""
    return f"route:{node_id}"


def presence_key(node_id: str) -> str:
    """The key whose existence means the node is online (expires with its TTL)."""
    return f"presence:{node_id}"


def rate_limit_key(bucket: str, subject: str) -> str:
    """The key counting attempts of ``subject`` (an address or a client id) in ``bucket``."""
    return f"ratelimit:{bucket}:{subject}"

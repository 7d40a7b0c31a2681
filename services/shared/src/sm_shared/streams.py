"""Redis key and stream names shared by every service (DESIGN.md, Data ownership)."""

from typing import Final

# Gateways → metrics: one entry per heartbeat, fields ``n`` (node id), ``h`` (the
# heartbeat message exactly as the agent sent it and the gateway validated it,
# JSON bytes) and ``r`` (receive time at the gateway, Unix seconds as text).
METRICS_STREAM: Final = "metrics"
METRICS_GROUP: Final = "metrics"
# Gateways → commands: execution reports of agents and node connections. Fields:
# ``n`` (node id), ``t`` (``report``: ``m`` is an agent's started/output/finished/
# refused message exactly as the gateway validated it, JSON bytes; ``online``: the
# node just connected to this gateway, so its pending executions can go now) and
# ``r`` (receive time at the gateway, Unix seconds as text).
RESULTS_STREAM: Final = "results"
RESULTS_GROUP: Final = "commands"
# Every service → commands (the single writer of the hash chain); fields: sm_shared.audit.
AUDIT_STREAM: Final = "audit"
AUDIT_GROUP: Final = "audit-chain"
EVENTS_CHANNEL: Final = "events"
# Registry → gateways: a node deleted or replaced; its connection must close (fields
# ``node_id``, ``reason`` = deleted|replaced, ``at``).
REVOCATIONS_STREAM: Final = "revocations"
# Set by every metrics ingest process while it runs (a TTL of a few seconds):
# `up` and the container health check read it, like arq's health-check key.
METRICS_INGEST_HEALTH_KEY: Final = "metrics-ingest:health"
# Likewise for the commands consumer process (results consumer and audit writer).
COMMANDS_CONSUMER_HEALTH_KEY: Final = "commands-consumer:health"
# Hash node id → Unix time of its last heartbeat (gateways write, the registry reads).
LAST_SEEN_HASH: Final = "last-seen"


def live_metrics_channel(node_id: str) -> str:
    """Pub/sub channel of one node's heartbeats as they arrive (gateways publish
    ``{"type": "metrics", "node_id", "received_at", "heartbeat": {...}}``)."""
    return f"live:{node_id}"


def gateway_inbox(gateway_id: str) -> str:
    """The stream of deliveries to the agents that gateway ``gateway_id`` holds.

    Fields: ``kind`` (``revoke``; ``execute`` and ``cancel``: ``frame`` is the
    agent-protocol message to send as it is, JSON bytes), ``node_id``.
    A delivery for a node the gateway no longer holds is dropped: the commands
    service's reconciliation sends it again where the node is now.
    """
    return f"gateway:{gateway_id}:inbox"


def command_channel(command_id: str) -> str:
    """Pub/sub channel of one command's progress (the commands service publishes
    ``execution`` and ``output`` events; events-protocol.json, topic ``command:<id>``)."""
    return f"command:{command_id}"


def route_key(node_id: str) -> str:
    """The key naming the gateway that holds the node's connection."""
    return f"route:{node_id}"


def presence_key(node_id: str) -> str:
    """The key whose existence means the node is online (expires with its TTL)."""
    return f"presence:{node_id}"


def rate_limit_key(bucket: str, subject: str) -> str:
    """The key counting attempts of ``subject`` (an address or a client id) in ``bucket``."""
    return f"ratelimit:{bucket}:{subject}"

"""Server Manager gateway: the agents' WebSocket (``/agent/ws``) and the clients'
live events (``/events/ws``).

``server.serve(settings)`` runs it; ``protocol`` holds the agent protocol
and its close codes, ``agent_messages`` its messages as msgspec Structs
mirroring ``openapi/agent-protocol.json`` (``schema_validators`` checks the
event stream's messages against its schema); ``authenticator`` (with
``sm_shared.service_token``) asks the registry who a credential belongs to;
``presence`` keeps online state in Redis; ``session`` is one agent's
connection; ``batcher`` writes heartbeats to the ``metrics`` stream,
execution reports and new connections to the ``results`` stream, in shared
pipelined batches, and acknowledges them; ``facts_reporter`` sends changed
facts to the registry; ``inbox`` reads this gateway's deliveries (revoke,
execute, cancel) and the revocations; ``event_protocol``, ``event_hub`` and
``event_client`` serve the clients' event stream
(``openapi/events-protocol.json``); ``probes`` answers the HTTP endpoints of
``openapi/gateway.yaml``; ``instruments`` holds its Prometheus metrics.
"""

from sm_gateway.settings import GatewaySettings

__all__ = ["GatewaySettings"]

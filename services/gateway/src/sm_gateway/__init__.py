"""Server Manager gateway: the agents' WebSocket endpoint (``/agent/ws``).

``server.serve(settings)`` runs it; ``protocol`` holds the agent protocol
(compiled from ``openapi/agent-protocol.json``) and its close codes;
``authenticator`` and ``service_token`` ask the registry who a credential
belongs to; ``presence`` keeps online state in Redis; ``session`` is one
agent's connection; ``probes`` answers the HTTP endpoints of
``openapi/gateway.yaml``; ``instruments`` holds its Prometheus metrics.
"""

from sm_gateway.settings import GatewaySettings

__all__ = ["GatewaySettings"]

"""Server Manager node agent.

Installs alone with pip (psutil, websockets, cryptography; no Server Manager
package). Modules: ``settings`` (TOML file + ``SM_AGENT_`` environment +
flags), ``trust`` (key parsing and the CA pinned by fingerprint), ``state``
(what enrollment leaves in the state directory), ``enrollment``, ``facts``,
``collectors`` (one measurement each), ``heartbeat`` (messages and their
sequence), ``spool`` (the offline buffer on disk), ``delivery`` (what one
connection sends next and what acks release), ``backoff``, ``link`` (the
sampler and the WebSocket to the gateway); remote control: ``orders``
(signed orders checked), ``policy`` (what this node allows), ``accepted``
(ids run at most once), ``runner`` (processes and file tails), ``reports``
(reports kept until acknowledged), ``control`` (orders in, reports out).
"""

from sm_agent.lazy_imports import defer

__all__ = ["PROTOCOL_VERSIONS", "__version__"]

# Before any dependency is imported: what they import but never use is loaded lazily.
defer()

__version__ = "0.1.0"

# Versions of the agent protocol (openapi/agent-protocol.json) this agent speaks.
PROTOCOL_VERSIONS: tuple[int, ...] = (1,)

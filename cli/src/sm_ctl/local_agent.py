"""The node agent ``up`` runs for its own machine, kept in ``<data dir>/agent/``.

``up`` writes the agent's configuration (``agent.toml``): the core's URLs,
and the enrollment key only until the agent holds its own credential (the
agent then removes it). The agent's state files are what a backup carries,
so a restored core keeps its local node instead of enrolling a second one.
"""

from __future__ import annotations

import json
from pathlib import Path

from sm_shared.datadir import DataDir, write_private

DIRECTORY = "agent"
CONFIG = "agent.toml"
# What enrollment leaves (sm_agent.state): credential, pinned CA, node identity,
# and the heartbeat sequence reserved for the current boot.
STATE_FILES = ("credential", "ca.pem", "node.json", "sequence")
# Remote control: the local agent runs on the operator's own machine, as the
# operator, so up enables every kind (a node installed by hand enables none).
CONTROL = {
    "allow_shell": True,
    "allow_service": True,
    "allow_logs": True,
    "log_roots": ["/var/log"],
}
# What up's banner says about it (banner.AGENT_CONTROL).
CONTROL_NOTE = "shell commands, service control and logs (under /var/log) — see agent.toml"


def agent_dir(data: DataDir) -> Path:
    return data.root / DIRECTORY


def enrolled(data: DataDir) -> bool:
    state = agent_dir(data)
    return (state / "credential").exists() and (state / "node.json").exists()


def node_id(data: DataDir) -> str:
    raw = json.loads((agent_dir(data) / "node.json").read_bytes())
    return str(raw["node_id"])


def write_config(data: DataDir, api_url: str, gateway_url: str) -> Path:
    """The agent's ``agent.toml`` (0600) for a core at ``api_url`` / ``gateway_url``.

    The gateway URL is always written: the one stored at enrollment names the
    port of that time, and ``up`` may run on another one (or after a restore).
    """
    state = agent_dir(data)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings: dict[str, object] = {
        "server": api_url,
        "gateway_urls": gateway_url,
        "state_dir": str(state),
        **CONTROL,
    }
    if not enrolled(data):
        settings["enrollment_key"] = data.enrollment_key.read_text().strip()
    config = state / CONFIG
    text = "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
    write_private(config, text.encode())
    return config

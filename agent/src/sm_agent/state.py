"""What enrollment leaves in the state directory (directory 0700, files 0600).

::

    credential   smn1.<node_id>.<secret>: the node's own credential
    ca.pem       the core CA, pinned by the key's fingerprint
    node.json    node id, command public key, gateway URL, core URL, heartbeat interval
    sequence     the heartbeat sequence block reserved for the current boot
    spool/       the offline buffer: heartbeats not yet acknowledged (sm_agent.spool)
    reports/     execution reports not yet acknowledged (sm_agent.reports)
    accepted     execution ids accepted until their orders expire (sm_agent.accepted)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


class StateError(Exception):
    """The state directory is missing, unreadable or damaged."""


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class NodeIdentity:
    """What the core told the agent at enrollment (all but the credential)."""

    node_id: str
    command_public_key: str
    gateway_url: str
    server: str
    heartbeat_interval: float


@dataclass(frozen=True)
class StateDir:
    root: Path

    @property
    def credential_file(self) -> Path:
        return self.root / "credential"

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def node_file(self) -> Path:
        return self.root / "node.json"

    @property
    def sequence_file(self) -> Path:
        return self.root / "sequence"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    def enrolled(self) -> bool:
        return self.credential_file.exists() and self.node_file.exists()

    def credential(self) -> str:
        try:
            return self.credential_file.read_text().strip()
        except OSError as exc:
            raise StateError(f"cannot read {self.credential_file}: {exc.strerror}") from exc

    def identity(self) -> NodeIdentity:
        try:
            raw = json.loads(self.node_file.read_bytes())
            return NodeIdentity(
                node_id=str(raw["node_id"]),
                command_public_key=str(raw["command_public_key"]),
                gateway_url=str(raw["gateway_url"]),
                server=str(raw["server"]),
                heartbeat_interval=float(raw["heartbeat_interval"]),
            )
        except OSError as exc:
            raise StateError(f"cannot read {self.node_file}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(f"{self.node_file} is damaged: {exc}") from exc

    def save(self, identity: NodeIdentity, credential: str) -> None:
        """Store an enrollment: node.json first, the credential last (it marks completion)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(self.node_file, json.dumps(asdict(identity), indent=2).encode() + b"\n")
        write_private(self.credential_file, credential.encode() + b"\n")

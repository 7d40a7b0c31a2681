"""The registry's inventory tables: groups, nodes, their labels, node credentials, enrollment tokens.

Storage only; the wire shapes belong to ``openapi/registry.yaml`` and are built
by the domain modules (``nodes``, ``groups``, ``enrollment``). Times are Unix
seconds (float). Labels live twice, deliberately: as JSON on the node row (read
with the row, no join for a page) and one row per label in ``node_labels``
(indexed by key and value, so selectors become SQL). Every write goes through
``nodes.write_labels``, which keeps the two equal.

Credentials outlive their node: deleting a node marks its credential revoked,
so the gateway can tell "deleted" (403) from "never existed" (401).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import Column, ForeignKey, Index, Integer, String
from sqlmodel import Field

from sm_registry.db import Table


class GroupRow(Table, table=True):
    __tablename__ = "groups"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    description: str = ""
    created_at: float
    updated_at: float


class NodeRow(Table, table=True):
    __tablename__ = "nodes"
    __table_args__ = (
        Index("ix_nodes_name", "name", "id"),
        Index("ix_nodes_hostname", "hostname", "id"),
        Index("ix_nodes_created_at", "created_at", "id"),
        Index("ix_nodes_group_id", "group_id", "name", "id"),
        Index("ix_nodes_machine_id", "machine_id", "created_at"),
        Index("ix_nodes_duplicate_of", "duplicate_of"),
    )

    id: str = Field(primary_key=True)
    name: str
    hostname: str
    machine_id: str
    group_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("groups.id"), nullable=True)
    )
    labels: str = "{}"  # JSON object, equal to this node's rows in node_labels
    facts: str  # JSON object (the Facts schema)
    # Set when the node enrolled with the machine id of an existing node and
    # no credential of it: an admin decides whether it replaces that node.
    duplicate_of: str | None = None
    created_at: float
    updated_at: float
    enrolled_at: float


class NodeLabelRow(Table, table=True):
    __tablename__ = "node_labels"
    __table_args__ = (Index("ix_node_labels_key_value", "key", "value", "node_id"),)

    node_id: str = Field(
        sa_column=Column(
            String, ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True, nullable=False
        )
    )
    key: str = Field(primary_key=True)
    value: str


class NodeCredentialRow(Table, table=True):
    __tablename__ = "node_credentials"

    node_id: str = Field(primary_key=True)
    secret_sha256: str  # hex SHA-256 of the credential's secret part
    created_at: float
    revoked_at: float | None = None


class EnrollmentTokenRow(Table, table=True):
    __tablename__ = "enrollment_tokens"

    id: str = Field(primary_key=True)
    secret_sha256: str = Field(unique=True)
    description: str = ""
    group_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("groups.id"), nullable=True)
    )
    labels: str = "{}"
    max_uses: int | None = None
    uses: int = 0
    created_at: float
    created_by: str
    expires_at: float
    revoked_at: float | None = None


GROUPS = Table.metadata.tables["groups"]
NODES = Table.metadata.tables["nodes"]
NODE_LABELS = Table.metadata.tables["node_labels"]
NODE_CREDENTIALS = Table.metadata.tables["node_credentials"]
ENROLLMENT_TOKENS = Table.metadata.tables["enrollment_tokens"]


# A node list page formats three timestamps per node; the same stored times come
# back page after page, and formatting was half the cost of building a page.
@lru_cache(maxsize=65_536)
def rfc3339(timestamp: float) -> str:
    """A stored Unix time as the API shows it (RFC 3339, UTC)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")

"""The commands service's tables (SQLAlchemy Core, on a MetaData of their own).

* ``commands``: one row per command: who (``actor``, ``client``), what
  (``kind`` and ``spec``, the kind's specification as JSON with the real
  environment values — they leave this table only redacted or inside a
  signed order), the ``target`` as given, timeout, expiry, batch window
  (``window``: executions in flight at once, null = all), note, the command
  it re-runs, and when it was cancelled.
* ``executions``: one row per (command, node): its ``state`` (queued, sent,
  running, succeeded, failed, timed_out, cancelled, expired, refused), the
  result (exit code, signal, refusal code and reason, error, the two stream
  summaries), when it was sent (``attempts`` counts deliveries), started
  and ended, when a cancel was requested, ``last_seq`` (the highest report
  seq recorded) and ``frame`` (the signed ``execute`` message, made once at
  its first dispatch and re-sent as is); ``cancel_sent_at`` when a ``cancel``
  was last written to a gateway.
* ``output_chunks``: the recorded output, keyed (execution, stream, offset);
  ``seq`` is the report's sequence number.
* ``reports``: the (execution, seq) of every report recorded: a report seen
  again is recognised and skipped (recording is exactly once).
* ``audit_outbox``: audit events (keyed, ``sm_shared.audit.AuditEvent.key``)
  written in the transaction whose change they describe and deleted once
  appended to the ``audit`` stream (``sm_commands.outbox``); ``id`` keeps
  their order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeAlias

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import postgresql, sqlite

from sm_shared import database

metadata = MetaData()

# A result row of any shape.
AnyRow: TypeAlias = Row[*tuple[Any, ...]]

ID_LENGTH: Final = 64
NODE_ID_LENGTH: Final = 64

# States an execution never leaves.
TERMINAL: Final = frozenset({"succeeded", "failed", "timed_out", "cancelled", "expired", "refused"})
# States in which an execution occupies a place of its command's batch window.
IN_FLIGHT: Final = frozenset({"sent", "running"})
STATES: Final = (
    "queued",
    "sent",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "expired",
    "refused",
)

commands = Table(
    "commands",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("actor", String(256), nullable=False),
    Column("client", String(256), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("spec", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("node_count", Integer, nullable=False),
    Column("timeout", Integer, nullable=False),
    Column("expires_in", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("batch", String(16), nullable=True),
    Column("window", Integer, nullable=True),
    Column("note", Text, nullable=True),
    Column("rerun_of", String(ID_LENGTH), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("cancelled_at", Float, nullable=True),
    # Set once every execution has ended (so listings need not count them).
    Column("done_at", Float, nullable=True),
    Index("commands_created", "created_at", "id"),
    Index("commands_actor_created", "actor", "created_at"),
    Index("commands_kind_created", "kind", "created_at"),
)

executions = Table(
    "executions",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column(
        "command_id",
        String(ID_LENGTH),
        ForeignKey("commands.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("node_id", String(NODE_ID_LENGTH), nullable=False),
    Column(
        "seq_no", Integer, nullable=False
    ),  # the execution's place in its command (dispatch order)
    Column("state", String(16), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("signal", Integer, nullable=True),
    Column("code", String(32), nullable=True),
    Column("reason", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("cancel_requested_at", Float, nullable=True),
    Column("cancel_sent_at", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_seq", Integer, nullable=True),
    Column("stdout_bytes", BigInteger, nullable=True),
    Column("stdout_sha256", String(64), nullable=True),
    Column("stdout_truncated", Integer, nullable=True),
    Column("stderr_bytes", BigInteger, nullable=True),
    Column("stderr_sha256", String(64), nullable=True),
    Column("stderr_truncated", Integer, nullable=True),
    Column("frame", LargeBinary, nullable=True),
    Index("executions_command", "command_id", "seq_no"),
    Index("executions_node_state", "node_id", "state"),
    # Reconciliation: what is queued or sent, oldest first.
    Index("executions_state_sent", "state", "sent_at"),
)

output_chunks = Table(
    "output_chunks",
    metadata,
    Column("execution_id", String(ID_LENGTH), primary_key=True),
    Column("stream", String(8), primary_key=True),
    Column("offset", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

reports = Table(
    "reports",
    metadata,
    Column("execution_id", String(ID_LENGTH), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)

audit_outbox = Table(
    "audit_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(512), nullable=False, unique=True),
    # The event's stream fields (``AuditEvent.fields()``) as a JSON object.
    Column("fields", Text, nullable=False),
)


def insert_ignoring(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows``, skipping those whose unique key is already there (SQLite, PostgreSQL)."""
    if not rows:
        return
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    conn.execute(dialect.insert(table).on_conflict_do_nothing(), list(rows))


def create_tables(engine: Engine) -> None:
    """Create the commands tables that do not exist yet (once per engine and process)."""
    database.create_tables(engine, metadata)

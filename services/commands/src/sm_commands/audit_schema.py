"""The audit log's tables (SQLAlchemy Core, on a MetaData of their own).

* ``audit_records``: one row per record of the hash chain (``sm_commands.audit_chain``
  says what each column holds and how ``hash`` is computed). ``seq`` counts from
  1 without gaps; ``stream_id`` (the ``audit`` stream entry the record came
  from) is unique, which makes appending idempotent; so is ``event_key``
  (the event's ``key``, null for events without one: a fact appended more
  than once — a producer's retry after a crash — is chained once). Neither
  is part of the record or of its hash (``AuditRecord`` in commands.yaml).
* ``audit_head``: one row (``id`` = 1) naming the last record's ``seq`` and
  ``hash``, written in the same transaction as the records. Appending reads the
  chain's end from it; verification checks the chain ends where it says (a
  truncated log is reported, not taken for a shorter valid one).

``create_tables(engine)`` creates both when missing; the commands service
calls it at start (the writer and the API call it too, it is idempotent).
There are no migrations yet (no release has shipped): a table made before a
column was added is not altered.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, Engine, Float, Index, Integer, MetaData, String, Table, Text

from sm_shared import database

GENESIS_HASH: Final = "0" * 64

metadata = MetaData()

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    # Unix seconds (a double: the event's time exactly as emitted).
    Column("at", Float, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(128), nullable=False),
    Column("target", String(512), nullable=False),
    Column("service", String(64), nullable=False),
    # The detail object's canonical JSON text (orjson, keys sorted).
    Column("detail", Text, nullable=False),
    Column("stream_id", String(64), nullable=False, unique=True),
    # The event's ``key`` (null when it had none); unique: a keyed fact is chained once.
    Column("event_key", String(512), nullable=True, unique=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_records_actor", "actor", "seq"),
    Index("ix_audit_records_action", "action", "seq"),
    Index("ix_audit_records_target", "target", "seq"),
    Index("ix_audit_records_at", "at"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)


def create_tables(engine: Engine) -> None:
    """Create the audit tables that do not exist yet (once per engine and process)."""
    database.create_tables(engine, metadata)

"""The registry's own SQLModel metadata; every table of the registry derives from ``Table``.

SQLModel's default metadata is global; several services may share one process,
so the registry keeps its tables in a registry of its own.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import registry
from sqlmodel import SQLModel

from sm_shared import database


class Table(SQLModel, registry=registry()):
    """Base of the registry's tables (not itself a table)."""


def create_tables(engine: Engine) -> None:
    """Create every registry table that does not exist yet (in one write transaction
    taken up front: the worker's ANALYZE may commit at the same moment, and a read
    transaction cannot then become a write one)."""
    database.create_tables(engine, Table.metadata)

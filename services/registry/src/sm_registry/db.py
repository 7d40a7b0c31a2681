"""The registry's own SQLModel metadata; every table of the registry derives from ``Table``.

SQLModel's default metadata is global; several services may share one process,
so the registry keeps its tables in a registry of its own.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import registry
from sqlmodel import SQLModel


class Table(SQLModel, registry=registry()):
    """Base of the registry's tables (not itself a table)."""


def create_tables(engine: Engine) -> None:
    """Create every registry table that does not exist yet."""
    Table.metadata.create_all(engine)

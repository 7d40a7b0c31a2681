"""INSERT ... ON CONFLICT for the two dialects the service runs on (SQLite and PostgreSQL).

Both spell it the same way; SQLAlchemy builds it from the dialect's own
``insert`` construct, so the statement is picked by the engine's dialect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert


def _insert(dialect: str, table: Table) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"the metrics service supports SQLite and PostgreSQL, not {dialect}")


def insert_ignoring(dialect: str, table: Table) -> Insert:
    """INSERT that skips rows whose key already exists."""
    statement: Insert = _insert(dialect, table).on_conflict_do_nothing()
    return statement


def upsert(
    dialect: str,
    table: Table,
    *,
    key: Iterable[str],
    replace: Iterable[str] | None = None,
    where: Any = None,
    set_: dict[str, ColumnElement[Any]] | None = None,
) -> Insert:
    """INSERT that updates the existing row of the same ``key`` instead.

    ``replace`` names the columns taken from the new row (default: all but the
    key); ``set_`` gives other expressions; ``where`` (a callable of the
    ``excluded`` row) limits which conflicts update.
    """
    statement = _insert(dialect, table)
    excluded = statement.excluded
    keys = list(key)
    columns = [c.name for c in table.columns if c.name not in keys] if replace is None else replace
    updates: dict[str, Any] = {name: excluded[name] for name in columns}
    updates.update(set_ or {})
    result: Insert = statement.on_conflict_do_update(
        index_elements=keys,
        set_=updates,
        where=None if where is None else where(excluded),
    )
    return result

"""SQLAlchemy engines the way every service wants them.

SQLite: WAL, ``synchronous=NORMAL``, a ``busy_timeout`` and foreign keys on.
Writers use ``writer(engine)``: their transactions open with ``BEGIN
IMMEDIATE``, so two writers queue on the lock instead of one failing when it
upgrades a read lock. Readers open plain deferred transactions and never wait
for writers (WAL). Any other URL (PostgreSQL) is used as is.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from typing import Any, Final

from sqlalchemy import Engine, MetaData, create_engine, event, text

BUSY_TIMEOUT_MS = 10_000
IMMEDIATE = "sm_immediate"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's transaction events issue BEGIN (pysqlite's own is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the pragmas below wait too
    _into_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _into_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while the file is locked.

    The switch needs the file to itself. At a first start every process of
    ``up`` opens the new file at once, and SQLite answers "database is locked"
    at once, without waiting, to a connection that would otherwise deadlock
    with another one converting or writing (a CI run lost the api that way).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_begin(conn: Any) -> None:
    immediate = conn.get_execution_options().get(IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# Between two write transactions of a long job: long enough for another process
# waiting on the lock (SQLite's busy handler polls every few milliseconds) to take it.
WRITER_PAUSE: Final = 0.02


def writer(engine: Engine) -> Engine:
    """The same engine, its transactions opened for writing (``BEGIN IMMEDIATE`` on SQLite)."""
    return engine.execution_options(**{IMMEDIATE: True})


def create_database_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get the pragmas above."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def ping(engine: Engine) -> None:
    """Raise unless the database answers."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


# (pool, metadata) pairs whose tables this process created or found; weak on the
# pool, so a disposed engine's entries go with it.
_created: weakref.WeakKeyDictionary[object, set[int]] = weakref.WeakKeyDictionary()
_created_lock = threading.Lock()


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create the tables of ``metadata`` that do not exist yet (once per engine and process).

    A service's API, its consumers and the worker all call this at start, often
    at the same moment: one write transaction taken up front (``BEGIN
    IMMEDIATE`` on SQLite) makes them wait their turn instead of failing with
    "table already exists" or "database is locked".
    """
    with _created_lock:
        done = _created.setdefault(engine.pool, set())
        if id(metadata) in done:
            return
        with writer(engine).begin() as connection:
            metadata.create_all(connection)
        done.add(id(metadata))

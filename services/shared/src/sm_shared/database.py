"""SQLAlchemy engines the way every service wants them.

SQLite: WAL, ``synchronous=NORMAL``, a ``busy_timeout`` and foreign keys on.
Writers use ``writer(engine)``: their transactions open with ``BEGIN
IMMEDIATE``, so two writers queue on the lock instead of one failing when it
upgrades a read lock. Readers open plain deferred transactions and never wait
for writers (WAL). Any other URL (PostgreSQL) is used as is.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, text

BUSY_TIMEOUT_MS = 10_000
IMMEDIATE = "sm_immediate"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's transaction events issue BEGIN (pysqlite's own is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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

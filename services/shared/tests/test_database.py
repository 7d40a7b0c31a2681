"""SQLite engines: WAL, busy timeout, and writers that queue instead of failing."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from sm_shared.database import BUSY_TIMEOUT_MS, create_database_engine, ping, writer


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_database_engine(f"sqlite:///{tmp_path / 'test.db'}")
    with writer(engine).begin() as conn:
        conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER)"))
        conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
    yield engine
    engine.dispose()


def test_pragmas(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == BUSY_TIMEOUT_MS
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL


def test_ping(engine: Engine, tmp_path: Path) -> None:
    ping(engine)
    missing_dir = create_database_engine(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")
    with pytest.raises(OperationalError):
        ping(missing_dir)
    missing_dir.dispose()


def _other_writer_can_lock(path: Path) -> bool:
    """Whether another connection could take the write lock right now (no waiting)."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return False
    finally:
        probe.close()


def test_writer_transactions_take_the_write_lock_at_begin(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "test.db"
    with writer(engine).begin() as conn:
        conn.execute(text("SELECT value FROM counter")).scalar()
        assert not _other_writer_can_lock(path)
    assert _other_writer_can_lock(path)
    # A plain transaction that only reads holds no write lock (readers never block writers).
    with engine.begin() as conn:
        conn.execute(text("SELECT value FROM counter")).scalar()
        assert _other_writer_can_lock(path)


def test_writer_sessions_take_the_write_lock_too(engine: Engine, tmp_path: Path) -> None:
    with Session(writer(engine)) as session, session.begin():
        session.execute(text("SELECT value FROM counter")).scalar()
        assert not _other_writer_can_lock(tmp_path / "test.db")


def _increment(bind: Engine, hold: float = 0.0) -> None:
    """Read-modify-write: the pattern that fails with deferred transactions."""
    with bind.begin() as conn:
        value = conn.execute(text("SELECT value FROM counter WHERE id = 1")).scalar_one()
        time.sleep(hold)
        conn.execute(text("UPDATE counter SET value = :v WHERE id = 1"), {"v": value + 1})


def _value(engine: Engine) -> int:
    with engine.connect() as conn:
        value: int = conn.execute(text("SELECT value FROM counter")).scalar_one()
        return value


def test_deferred_read_then_write_fails_without_writer(engine: Engine) -> None:
    """The control: the failure ``writer()`` exists to prevent, produced deterministically."""
    read = threading.Barrier(2)
    first_committed = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        with engine.begin() as conn:
            conn.execute(text("SELECT value FROM counter")).scalar_one()
            read.wait()
            conn.execute(text("UPDATE counter SET value = value + 1"))
        first_committed.set()

    def second() -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("SELECT value FROM counter")).scalar_one()
                read.wait()
                first_committed.wait()
                conn.execute(text("UPDATE counter SET value = value + 1"))
        except OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1
    assert "database is locked" in str(errors[0])


def test_two_concurrent_writers_serialize(engine: Engine) -> None:
    """Both writers read, wait and write at the same time: the second queues, none fails."""
    first_inside = threading.Event()
    errors: list[BaseException] = []
    timings: dict[str, float] = {}

    def first() -> None:
        with writer(engine).begin() as conn:
            value = conn.execute(text("SELECT value FROM counter")).scalar_one()
            first_inside.set()
            time.sleep(0.3)
            conn.execute(text("UPDATE counter SET value = :v"), {"v": value + 1})

    def second() -> None:
        first_inside.wait()
        started = time.monotonic()
        try:
            _increment(writer(engine))
        except OperationalError as exc:
            errors.append(exc)
        timings["second"] = time.monotonic() - started

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _value(engine) == 2  # neither increment was lost
    assert timings["second"] >= 0.2  # it waited for the first writer


def test_many_concurrent_writers_lose_nothing(engine: Engine) -> None:
    threads_n, rounds = 4, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def work() -> None:
        start.wait()
        for _ in range(rounds):
            try:
                _increment(writer(engine), hold=0.001)
            except OperationalError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _value(engine) == threads_n * rounds


def test_readers_do_not_wait_for_a_writer(engine: Engine) -> None:
    with writer(engine).begin() as conn:
        conn.execute(text("UPDATE counter SET value = 42"))
        started = time.monotonic()
        # Another connection reads the last committed value at once (WAL).
        assert _value(engine) == 0
        assert time.monotonic() - started < 1.0
    assert _value(engine) == 42


def test_a_new_file_turns_wal_while_another_connection_writes(tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once ("database is locked", no busy wait)
    while another connection holds the write lock: the engine retries until it is free
    (at a first start every process of ``up`` opens the new files together)."""
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x INTEGER)")  # a rollback-journal file, not WAL yet
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    probe = sqlite3.connect(path, timeout=5)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # SQLite's own answer
            probe.execute("PRAGMA journal_mode=WAL")
    finally:
        probe.close()
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    engine = create_database_engine(f"sqlite:///{path}")
    try:
        began = time.monotonic()
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
        assert time.monotonic() - began >= 0.4  # it waited for the writer
    finally:
        release.join()
        holder.close()
        engine.dispose()

"""The audit hash chain on a real SQLite file: appending, and verify naming what was tampered with."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, select, text, update

from sm_commands import audit_chain
from sm_commands.audit_schema import GENESIS_HASH, audit_records
from sm_shared.audit import AuditEvent
from sm_shared.database import create_database_engine
from sm_shared.datadir import DataDir


@pytest.fixture
def engine(data_dir: DataDir) -> Iterator[Engine]:
    engine = create_database_engine(data_dir.database_url("commands"))
    yield engine
    engine.dispose()


def event(n: int, **detail: object) -> AuditEvent:
    return AuditEvent(
        actor=f"user-{n % 3}",
        action="command.create" if n % 2 else "node.update",
        target=f"node:n{n}",
        service="commands",
        detail={"n": n, "text": "héllo ✓", **detail},
        at=1_764_345_600.0 + n + 0.123456,
    )


def fill(engine: Engine, count: int) -> None:
    entries = [(f"{1000 + n}-0", event(n)) for n in range(1, count + 1)]
    assert audit_chain.append(engine, entries) == count


def test_an_appended_chain_verifies_and_links_from_genesis(engine: Engine) -> None:
    assert audit_chain.verify(engine) == audit_chain.Verification(True, 0, None)
    fill(engine, 5)
    # a second batch continues the chain
    assert audit_chain.append(engine, [("2000-0", event(6)), ("2000-1", event(7))]) == 2
    result = audit_chain.verify(engine, chunk=2)  # several chunks
    assert result.ok
    assert result.records == 7
    assert result.first_bad is None
    with engine.connect() as conn:
        rows = conn.execute(select(audit_records).order_by(audit_records.c.seq)).all()
    assert [row.seq for row in rows] == list(range(1, 8))
    assert rows[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(rows):
        assert after.prev_hash == before.hash
    assert result.head == rows[-1].hash
    assert audit_chain.head(engine) == audit_chain.Head(7, rows[-1].hash)


def test_the_hash_is_reproducible_with_plain_json_from_the_api_record(engine: Engine) -> None:
    """An outside verifier: the API's record without ``hash``, keys sorted, compact, UTF-8."""
    fill(engine, 3)
    page, _ = audit_chain.records(engine, audit_chain.Filters(), limit=10)
    assert [r["seq"] for r in page] == [3, 2, 1]
    for record in page:
        content = {k: v for k, v in record.items() if k != "hash"}
        encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(encoded.encode()).hexdigest() == record["hash"]
        assert set(content) == set(audit_chain.RECORD_FIELDS)


def test_appending_is_idempotent_on_the_stream_id(engine: Engine) -> None:
    fill(engine, 3)
    again = [("1002-0", event(2)), ("3000-0", event(9)), ("3000-0", event(9))]
    assert audit_chain.append(engine, again) == 1
    result = audit_chain.verify(engine)
    assert result.ok
    assert result.records == 4


def _bad(engine: Engine) -> audit_chain.BadRecord:
    result = audit_chain.verify(engine, chunk=3)
    assert not result.ok
    assert result.first_bad is not None
    return result.first_bad


def test_an_edited_detail_is_named(engine: Engine) -> None:
    fill(engine, 8)
    with engine.begin() as conn:
        conn.execute(
            update(audit_records).where(audit_records.c.seq == 5).values(detail='{"n":55}')
        )
    bad = _bad(engine)
    assert bad.seq == 5
    assert "hash" in bad.reason
    assert audit_chain.verify(engine).records == 4


def test_an_edited_actor_is_named(engine: Engine) -> None:
    fill(engine, 8)
    with engine.begin() as conn:
        conn.execute(
            update(audit_records).where(audit_records.c.seq == 2).values(actor="someone-else")
        )
    assert _bad(engine).seq == 2


def test_a_rehashed_record_breaks_the_next_link(engine: Engine) -> None:
    """Editing a record and recomputing its hash is caught by the following record."""
    fill(engine, 6)
    with engine.connect() as conn:
        row = conn.execute(select(audit_records).where(audit_records.c.seq == 3)).one()
    record = audit_chain.stored_record(row)
    record["detail"] = {"n": 333}
    new_hash = audit_chain.record_hash(record)
    with engine.begin() as conn:
        conn.execute(
            update(audit_records)
            .where(audit_records.c.seq == 3)
            .values(detail='{"n":333}', hash=new_hash)
        )
    bad = _bad(engine)
    assert bad.seq == 4
    assert "prev_hash" in bad.reason


def test_an_edited_hash_is_named(engine: Engine) -> None:
    fill(engine, 4)
    with engine.begin() as conn:
        conn.execute(update(audit_records).where(audit_records.c.seq == 4).values(hash="f" * 64))
    assert _bad(engine).seq == 4


def test_a_deleted_record_is_named_by_its_seq(engine: Engine) -> None:
    fill(engine, 7)
    with engine.begin() as conn:
        conn.execute(delete(audit_records).where(audit_records.c.seq == 4))
    bad = _bad(engine)
    assert bad.seq == 4
    assert "missing" in bad.reason


def test_a_deleted_last_record_is_named(engine: Engine) -> None:
    fill(engine, 7)
    with engine.begin() as conn:
        conn.execute(delete(audit_records).where(audit_records.c.seq == 7))
    bad = _bad(engine)
    assert bad.seq == 7
    assert "missing" in bad.reason


def test_reordered_records_are_named(engine: Engine) -> None:
    fill(engine, 6)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET seq = -1 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_records SET seq = 3 WHERE seq = 4"))
        conn.execute(text("UPDATE audit_records SET seq = 4 WHERE seq = -1"))
    assert _bad(engine).seq == 3


def test_a_detail_that_is_not_json_is_named_and_still_listed(engine: Engine) -> None:
    fill(engine, 3)
    with engine.begin() as conn:
        conn.execute(update(audit_records).where(audit_records.c.seq == 1).values(detail="{oops"))
    bad = _bad(engine)
    assert bad.seq == 1
    assert "JSON" in bad.reason
    page, _ = audit_chain.records(engine, audit_chain.Filters(), limit=10)
    assert page[-1]["detail"] == {"unreadable": "{oops"}

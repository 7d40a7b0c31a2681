"""The hash-chained audit log: appending records and verifying the chain.

A record (exactly the API's ``AuditRecord``) holds::

    seq        1, 2, 3, … without gaps (the chain's order)
    at         when the event happened, Unix seconds (a JSON number)
    actor      who: a user name, a client id (``sub`` of the token)
    action     what, e.g. ``command.create``, ``node.update``
    target     to what, e.g. ``command:<id>``, ``node:<id>``
    service    the service that emitted the event
    detail     a JSON object (stored as its canonical text, see below)
    prev_hash  the previous record's ``hash``; 64 zeros for seq 1
    hash       see below

The table also keeps each record's ``stream_id`` (the ``audit`` stream entry
it came from, unique: appending is idempotent) and ``event_key`` (the event's
``key``, unique when set: a fact its producer appended twice is chained
once); both are bookkeeping, not part of the record or of its hash, so the
API's records are all a verifier needs.

Canonical encoding (what an outside verifier reproduces): the record WITHOUT
``hash`` as one JSON object with exactly the eight members seq, at, actor,
action, target, service, detail (the nested object, not text), prev_hash;
keys sorted at every level, no whitespace, UTF-8 with non-ASCII unescaped:
``orjson.dumps(record, option=orjson.OPT_SORT_KEYS)``. ``hash`` is the
lower-case hex SHA-256 of those bytes. Python's ``json.dumps(record,
sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`` gives
the same bytes, floats included (both write the shortest text that reads
back as the same double), except for floats of 1e16 and more or below 1e-4
(Python writes ``1e+16``, orjson ``1e16``): ``at`` never is one. Example::

    {"action":"node.update","actor":"admin","at":1764345676.123456,
     "detail":{"labels":{"role":"db"}},"prev_hash":"000…000","seq":1,
     "service":"registry","target":"node:…"}

Appending (``append``) writes a batch in ONE write transaction: it reads the
chain's end, skips entries whose stream id is already recorded (the writer
may see an entry twice) and events whose key is already recorded or came
earlier in the batch (a producer may append a keyed fact twice: the first
is kept), links and hashes the rest and moves the head
(``audit_head``). Verifying (``verify``) streams the table in ``seq`` order in
chunks and returns ok, or the first record that does not match with the
reason: a gap in ``seq`` (a deleted record: the missing seq is named), a
``hash`` that is not the hash of the record's content (an edited record),
a ``prev_hash`` that is not the previous record's hash (a broken link,
records reordered), or a chain that ends before the head says it does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import Connection, Engine, Row, insert, select, update

from sm_commands.audit_schema import GENESIS_HASH, audit_head, audit_records, create_tables
from sm_shared.audit import AuditEvent
from sm_shared.database import writer

HEAD_ID: Final = 1
# The members a record's hash covers (the API's AuditRecord without ``hash``).
RECORD_FIELDS: Final = ("seq", "at", "actor", "action", "target", "service", "detail", "prev_hash")
VERIFY_CHUNK: Final = 2000
# Keys per ``IN (...)`` when looking for those already recorded.
KEY_CHUNK: Final = 500


def canonical_json(value: Any) -> bytes:
    """Keys sorted at every level, compact, UTF-8 (the encoding the chain hashes)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any]) -> str:
    """The hex SHA-256 of the record's canonical JSON (``hash`` itself left out).

    ``record`` holds seq, at, actor, action, target, service, detail (the
    object) and prev_hash; other members (``hash``, ``stream_id``) are left out.
    """
    content = {name: record[name] for name in RECORD_FIELDS}
    return hashlib.sha256(canonical_json(content)).hexdigest()


@dataclass(frozen=True)
class Head:
    """The chain's last record: its seq (0 when empty) and hash (genesis when empty)."""

    seq: int
    hash: str


def _last_record(conn: Connection) -> Head:
    row = conn.execute(
        select(audit_records.c.seq, audit_records.c.hash)
        .order_by(audit_records.c.seq.desc())
        .limit(1)
    ).first()
    return Head(0, GENESIS_HASH) if row is None else Head(int(row.seq), str(row.hash))


def _stored_head(conn: Connection) -> Head | None:
    row = conn.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == HEAD_ID)
    ).first()
    return None if row is None else Head(int(row.seq), str(row.hash))


def head(engine: Engine) -> Head:
    """The chain's end as the head row names it (genesis when nothing was appended)."""
    create_tables(engine)
    with engine.connect() as conn:
        return _stored_head(conn) or Head(0, GENESIS_HASH)


def append(engine: Engine, entries: Sequence[tuple[str, AuditEvent]]) -> int:
    """Append ``(stream id, event)`` pairs in order, in one transaction; returns how many
    were new (entries whose stream id or event key is already recorded are skipped)."""
    if not entries:
        return 0
    create_tables(engine)
    ids = [stream_id for stream_id, _ in entries]
    keys = list({event.key for _, event in entries if event.key is not None})
    with writer(engine).begin() as conn:
        seen = set(
            conn.execute(
                select(audit_records.c.stream_id).where(audit_records.c.stream_id.in_(ids))
            ).scalars()
        )
        seen_keys: set[str] = set()
        for start in range(0, len(keys), KEY_CHUNK):
            seen_keys.update(
                conn.execute(
                    select(audit_records.c.event_key).where(
                        audit_records.c.event_key.in_(keys[start : start + KEY_CHUNK])
                    )
                ).scalars()
            )
        end = _last_record(conn)
        seq, previous = end.seq, end.hash
        rows: list[dict[str, Any]] = []
        for stream_id, event in entries:
            if stream_id in seen or event.key in seen_keys:
                continue
            seen.add(stream_id)
            if event.key is not None:
                seen_keys.add(event.key)
            seq += 1
            # Re-read, so the object hashed is exactly what the stored text gives back.
            detail_text = canonical_json(event.detail)
            record: dict[str, Any] = {
                "seq": seq,
                "at": float(event.at),
                "actor": event.actor,
                "action": event.action,
                "target": event.target,
                "service": event.service,
                "detail": orjson.loads(detail_text),
                "prev_hash": previous,
            }
            previous = record_hash(record)
            rows.append(
                {
                    **record,
                    "detail": detail_text.decode(),
                    "stream_id": stream_id,
                    "event_key": event.key,
                    "hash": previous,
                }
            )
        if not rows:
            return 0
        conn.execute(insert(audit_records), rows)
        moved = conn.execute(
            update(audit_head).where(audit_head.c.id == HEAD_ID).values(seq=seq, hash=previous)
        )
        if moved.rowcount == 0:
            conn.execute(insert(audit_head).values(id=HEAD_ID, seq=seq, hash=previous))
    return len(rows)


def stored_record(row: Row[Any], *, tolerant: bool = False) -> dict[str, Any]:
    """A table row as the record it holds (``detail`` parsed, ``hash`` included; the API's form).

    A ``detail`` that is not JSON (an edited row) raises, unless ``tolerant``:
    then it is shown as ``{"unreadable": <the stored text>}``.
    """
    try:
        detail = orjson.loads(row.detail)
    except orjson.JSONDecodeError:
        if not tolerant:
            raise
        detail = {"unreadable": row.detail}
    return {
        "seq": int(row.seq),
        "at": float(row.at),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "service": row.service,
        "detail": detail,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


@dataclass(frozen=True)
class BadRecord:
    seq: int
    reason: str


@dataclass(frozen=True)
class Verification:
    """``ok``; ``records`` checked (good); ``head`` = the last good record's hash (None when
    there is none); the first bad record."""

    ok: bool
    records: int
    head: str | None
    first_bad: BadRecord | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": self.ok, "records": self.records, "head": self.head}
        if self.first_bad is not None:
            body["first_bad"] = {"seq": self.first_bad.seq, "reason": self.first_bad.reason}
        return body


def _rows(engine: Engine, upto: int, chunk: int) -> Iterator[Row[Any]]:
    """The records with seq ≤ ``upto`` in seq order, ``chunk`` per read transaction."""
    after = -1
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(audit_records)
                .where(audit_records.c.seq > after, audit_records.c.seq <= upto)
                .order_by(audit_records.c.seq)
                .limit(chunk)
            ).all()
        if not rows:
            return
        yield from rows
        after = int(rows[-1].seq)


def _check(row: Row[Any], expected_seq: int, previous: str) -> BadRecord | None:
    seq = int(row.seq)
    if seq != expected_seq:
        missing = (
            f"seq {expected_seq}" if seq == expected_seq + 1 else f"seqs {expected_seq}-{seq - 1}"
        )
        return BadRecord(
            expected_seq,
            f"missing: {missing} deleted (seq {seq} follows seq {expected_seq - 1})",
        )
    try:
        record = stored_record(row)
    except orjson.JSONDecodeError:
        return BadRecord(seq, "edited: its detail is not JSON")
    if record_hash(record) != row.hash:
        return BadRecord(seq, "edited: its hash is not the hash of its content")
    if row.prev_hash != previous:
        which = "the genesis hash" if expected_seq == 1 else f"the hash of seq {expected_seq - 1}"
        return BadRecord(seq, f"broken link: its prev_hash is not {which}")
    return None


def verify(engine: Engine, *, chunk: int = VERIFY_CHUNK) -> Verification:
    """Check the chain from seq 1 to the head (as read when verification starts)."""
    found = _verify(engine, chunk)
    if found.records == 0:
        return Verification(found.ok, 0, None, found.first_bad)
    return found


def _verify(engine: Engine, chunk: int) -> Verification:
    create_tables(engine)
    with engine.connect() as conn:
        stored = _stored_head(conn)
        end = stored or _last_record(conn)
    expected, previous = 1, GENESIS_HASH
    for row in _rows(engine, end.seq, chunk):
        bad = _check(row, expected, previous)
        if bad is not None:
            return Verification(False, expected - 1, previous, bad)
        expected, previous = expected + 1, str(row.hash)
    count = expected - 1
    if stored is None and count > 0:
        return Verification(False, count, previous, BadRecord(count, "the head row is missing"))
    if count < end.seq:
        gone = f"seq {end.seq}" if count + 1 == end.seq else f"seqs {count + 1}-{end.seq}"
        reason = f"missing: {gone} deleted (the chain ends at seq {count}, its head at {end.seq})"
        return Verification(False, count, previous, BadRecord(count + 1, reason))
    if previous != end.hash:
        return Verification(
            False, count, previous, BadRecord(count, "the head row names another hash")
        )
    return Verification(True, count, previous)


@dataclass(frozen=True)
class Filters:
    """What ``records`` selects: exact actor, action and target; since ≤ ``at`` < until."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None


def records(
    engine: Engine, filters: Filters, *, limit: int, before: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Records matching ``filters``, newest first, with seq < ``before``; and the
    ``before`` of the next page (None on the last page)."""
    create_tables(engine)
    query = select(audit_records).order_by(audit_records.c.seq.desc()).limit(limit + 1)
    if before is not None:
        query = query.where(audit_records.c.seq < before)
    for column, value in (
        (audit_records.c.actor, filters.actor),
        (audit_records.c.action, filters.action),
        (audit_records.c.target, filters.target),
    ):
        if value is not None:
            query = query.where(column == value)
    if filters.since is not None:
        query = query.where(audit_records.c.at >= filters.since)
    if filters.until is not None:
        query = query.where(audit_records.c.at < filters.until)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    page = [stored_record(row, tolerant=True) for row in rows[:limit]]
    more = len(rows) > limit
    return page, (page[-1]["seq"] if more and page else None)

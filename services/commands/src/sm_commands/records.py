"""Commands and executions in the database: create, read, list, cancel (the API's side).

Everything here is synchronous (run it in a thread); writers use
``sm_shared.database.writer`` transactions. Creating and cancelling stage
their audit events in the same transaction (``outbox.stage``). Answers are the contract's shapes
(``Command``, ``CommandSummary``, ``Execution``, ``Output``), environment values redacted.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update

from sm_commands import outbox, specs
from sm_commands.schema import STATES, TERMINAL, AnyRow, commands, executions, output_chunks
from sm_shared.audit import AuditEvent
from sm_shared.database import writer
from sm_shared.problems import BadRequest, Conflict, NotFound

INSERT_CHUNK: Final = 5000
IN_CHUNK: Final = 500


def new_command_id() -> str:
    return f"c_{uuid.uuid4().hex}"


def new_execution_id() -> str:
    return f"x_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class NewCommand:
    """What a command is created from (the target already resolved to ``node_ids``)."""

    actor: str
    client: str | None
    kind: str
    spec: dict[str, Any]
    target: dict[str, Any]
    node_ids: Sequence[str]
    timeout: int
    expires_in: int
    batch: str | None
    note: str | None
    rerun_of: str | None = None
    created_at: float = 0.0
    id: str = field(default_factory=new_command_id)


def create(engine: Engine, new: NewCommand, audit: Sequence[AuditEvent] = ()) -> None:
    """Store the command and one queued execution per node, and stage ``audit`` (one
    transaction)."""
    now = new.created_at
    command_row = {
        "id": new.id,
        "actor": new.actor,
        "client": new.client,
        "kind": new.kind,
        "spec": orjson.dumps(new.spec).decode(),
        "target": orjson.dumps(new.target).decode(),
        "node_count": len(new.node_ids),
        "timeout": new.timeout,
        "expires_in": new.expires_in,
        "expires_at": now + new.expires_in,
        "batch": new.batch,
        "window": specs.window(new.batch, len(new.node_ids)),
        "note": new.note,
        "rerun_of": new.rerun_of,
        "created_at": now,
    }
    rows = [
        {
            "id": new_execution_id(),
            "command_id": new.id,
            "node_id": node_id,
            "seq_no": n,
            "state": "queued",
            "created_at": now,
            "attempts": 0,
        }
        for n, node_id in enumerate(new.node_ids)
    ]
    with writer(engine).begin() as conn:
        conn.execute(insert(commands), [command_row])
        for start in range(0, len(rows), INSERT_CHUNK):
            conn.execute(insert(executions), rows[start : start + INSERT_CHUNK])
        outbox.stage(conn, audit)


# ---- reading -------------------------------------------------------------------------

EXECUTION_COLUMNS: Final = (
    executions.c.id,
    executions.c.command_id,
    executions.c.node_id,
    executions.c.state,
    executions.c.exit_code,
    executions.c.signal,
    executions.c.code,
    executions.c.reason,
    executions.c.error,
    executions.c.created_at,
    executions.c.sent_at,
    executions.c.started_at,
    executions.c.ended_at,
    executions.c.cancel_requested_at,
    executions.c.attempts,
    executions.c.stdout_bytes,
    executions.c.stdout_sha256,
    executions.c.stdout_truncated,
    executions.c.stderr_bytes,
    executions.c.stderr_sha256,
    executions.c.stderr_truncated,
)
_OPTIONAL: Final = (
    "signal",
    "code",
    "reason",
    "error",
    "sent_at",
    "started_at",
    "ended_at",
    "cancel_requested_at",
)


def execution_answer(row: AnyRow) -> dict[str, Any]:
    """An ``Execution`` of the contract from a row of ``EXECUTION_COLUMNS``."""
    m = row._mapping
    answer: dict[str, Any] = {
        "id": m["id"],
        "command_id": m["command_id"],
        "node_id": m["node_id"],
        "state": m["state"],
        "exit_code": m["exit_code"],
        "created_at": m["created_at"],
        "attempts": m["attempts"],
    }
    for name in _OPTIONAL:
        if m[name] is not None:
            answer[name] = m[name]
    for stream in ("stdout", "stderr"):
        if m[f"{stream}_sha256"] is not None:
            answer[stream] = {
                "bytes": m[f"{stream}_bytes"],
                "sha256": m[f"{stream}_sha256"],
                "truncated": bool(m[f"{stream}_truncated"]),
            }
    return answer


def status_of(row: AnyRow) -> str:
    m = row._mapping
    if m["cancelled_at"] is not None:
        return "cancelled"
    if m["done_at"] is not None:
        return "done"
    return "running"


def summary_answer(row: AnyRow, counts: dict[str, int]) -> dict[str, Any]:
    """A ``CommandSummary`` from a ``commands`` row and its executions' counts by state."""
    m = row._mapping
    kind = m["kind"]
    answer: dict[str, Any] = {
        "id": m["id"],
        "actor": m["actor"],
        "kind": kind,
        kind: specs.redacted(kind, orjson.loads(m["spec"])),
        "target": orjson.loads(m["target"]),
        "node_count": m["node_count"],
        "timeout": m["timeout"],
        "expires_in": m["expires_in"],
        "expires_at": m["expires_at"],
        "batch": m["batch"],
        "note": m["note"],
        "rerun_of": m["rerun_of"],
        "created_at": m["created_at"],
        "cancelled_at": m["cancelled_at"],
        "status": status_of(row),
        "summary": {state: counts.get(state, 0) for state in STATES},
    }
    if m["client"] is not None:
        answer["client"] = m["client"]
    return answer


def _counts(conn: Connection, command_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {command_id: {} for command_id in command_ids}
    if not command_ids:
        return found
    rows = conn.execute(
        select(executions.c.command_id, executions.c.state, func.count())
        .where(executions.c.command_id.in_(command_ids))
        .group_by(executions.c.command_id, executions.c.state)
    )
    for command_id, state, count in rows:
        found[command_id][state] = count
    return found


def command_row(conn: Connection, command_id: str) -> AnyRow:
    row = conn.execute(select(commands).where(commands.c.id == command_id)).first()
    if row is None:
        raise NotFound(f"no command {command_id}")
    return row


def get(engine: Engine, command_id: str) -> dict[str, Any]:
    """The ``Command``: its summary and every execution, in dispatch order."""
    with engine.connect() as conn:
        row = command_row(conn, command_id)
        rows = conn.execute(
            select(*EXECUTION_COLUMNS)
            .where(executions.c.command_id == command_id)
            .order_by(executions.c.seq_no)
        ).all()
    counts: dict[str, int] = {}
    answers = []
    for execution in rows:
        answers.append(execution_answer(execution))
        state = execution._mapping["state"]
        counts[state] = counts.get(state, 0) + 1
    return {**summary_answer(row, counts), "executions": answers}


def spec_of(engine: Engine, command_id: str) -> tuple[AnyRow, dict[str, Any]]:
    """The command's row and its real (unredacted) specification."""
    with engine.connect() as conn:
        row = command_row(conn, command_id)
    return row, orjson.loads(row._mapping["spec"])


# ---- listing -------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    actor: str | None = None
    kind: str | None = None
    node_id: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None


def encode_cursor(created_at: float, command_id: str) -> str:
    text = f"{created_at!r}|{command_id}".encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, command_id = text.partition("|")
        created_at = float(created)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("`cursor` is not a cursor this listing returned") from None
    if not command_id:
        raise BadRequest("`cursor` is not a cursor this listing returned")
    return created_at, command_id


def listing(engine: Engine, filters: Filters, limit: int, cursor: str | None) -> dict[str, Any]:
    """One page of ``CommandSummary``, newest first."""
    query = select(commands)
    conditions: list[Any] = []
    if filters.actor is not None:
        conditions.append(commands.c.actor == filters.actor)
    if filters.kind is not None:
        conditions.append(commands.c.kind == filters.kind)
    if filters.node_id is not None:
        conditions.append(
            commands.c.id.in_(
                select(executions.c.command_id).where(executions.c.node_id == filters.node_id)
            )
        )
    if filters.status == "cancelled":
        conditions.append(commands.c.cancelled_at.is_not(None))
    elif filters.status == "done":
        conditions += [commands.c.cancelled_at.is_(None), commands.c.done_at.is_not(None)]
    elif filters.status == "running":
        conditions += [commands.c.cancelled_at.is_(None), commands.c.done_at.is_(None)]
    if filters.since is not None:
        conditions.append(commands.c.created_at >= filters.since)
    if filters.until is not None:
        conditions.append(commands.c.created_at < filters.until)
    if cursor is not None:
        created_at, command_id = decode_cursor(cursor)
        conditions.append(
            or_(
                commands.c.created_at < created_at,
                and_(commands.c.created_at == created_at, commands.c.id < command_id),
            )
        )
    query = (
        query.where(*conditions)
        .order_by(commands.c.created_at.desc(), commands.c.id.desc())
        .limit(limit + 1)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        page = rows[:limit]
        counts = _counts(conn, [row._mapping["id"] for row in page])
    items = [summary_answer(row, counts[row._mapping["id"]]) for row in page]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]._mapping
        next_cursor = encode_cursor(last["created_at"], last["id"])
    return {"items": items, "next_cursor": next_cursor}


# ---- output --------------------------------------------------------------------------


def output(
    engine: Engine, command_id: str, execution_id: str, stream: str, offset: int, limit: int
) -> dict[str, Any]:
    """Up to ``limit`` recorded bytes of ``stream`` from ``offset`` on (an ``Output``)."""
    with engine.connect() as conn:
        state = conn.execute(
            select(executions.c.state).where(
                executions.c.id == execution_id, executions.c.command_id == command_id
            )
        ).scalar()
        if state is None:
            raise NotFound(f"no execution {execution_id} in command {command_id}")
        end = offset + limit
        chunks = conn.execute(
            select(output_chunks.c.offset, output_chunks.c.data)
            .where(
                output_chunks.c.execution_id == execution_id,
                output_chunks.c.stream == stream,
                output_chunks.c.offset < end,
                output_chunks.c.offset + func.length(output_chunks.c.data) > offset,
            )
            .order_by(output_chunks.c.offset)
        ).all()
        data = bytearray()
        position = offset
        for chunk_offset, chunk in chunks:
            if chunk_offset > position:
                break  # a gap: that part has not been recorded yet
            piece = chunk[position - chunk_offset : end - chunk_offset]
            data += piece
            position += len(piece)
            if position >= end:
                break
        more = conn.execute(
            select(output_chunks.c.offset)
            .where(
                output_chunks.c.execution_id == execution_id,
                output_chunks.c.stream == stream,
                output_chunks.c.offset + func.length(output_chunks.c.data) > position,
            )
            .limit(1)
        ).first()
    return {
        "execution_id": execution_id,
        "stream": stream,
        "offset": offset,
        "data": base64.b64encode(bytes(data)).decode(),
        "next_offset": position,
        "complete": state in TERMINAL and more is None,
    }


# ---- cancelling ----------------------------------------------------------------------


@dataclass
class Cancellation:
    """What a cancel changed: executions ended at once (queued) and those to be told to stop."""

    command: AnyRow
    ended: list[AnyRow] = field(default_factory=list)
    to_stop: list[AnyRow] = field(default_factory=list)
    already_requested: int = 0
    # The audit events staged with the change.
    audit: list[AuditEvent] = field(default_factory=list)


_ACTIVE: Final = ("queued", "sent", "running")
CANCEL_REASON: Final = "cancelled before it was sent"


def cancel(
    engine: Engine,
    command_id: str,
    now: float,
    execution_id: str | None = None,
    audit: Callable[[Cancellation], list[AuditEvent]] | None = None,
) -> Cancellation:
    """Cancel the command's (or one execution's) executions that have not ended.

    Queued ones end as ``cancelled`` now; sent and running ones get
    ``cancel_requested_at`` (the caller writes their ``cancel`` frames).
    ``audit(cancellation)`` gives the events staged in the same transaction.
    """
    with writer(engine).begin() as conn:
        command = command_row(conn, command_id)
        conditions = [executions.c.command_id == command_id]
        if execution_id is not None:
            conditions.append(executions.c.id == execution_id)
        rows = conn.execute(
            select(
                executions.c.id,
                executions.c.node_id,
                executions.c.state,
                executions.c.cancel_requested_at,
            ).where(*conditions)
        ).all()
        if execution_id is not None and not rows:
            raise NotFound(f"no execution {execution_id} in command {command_id}")
        result = Cancellation(command)
        for row in rows:
            m = row._mapping
            if m["state"] == "queued":
                result.ended.append(row)
            elif m["state"] in ("sent", "running"):
                if m["cancel_requested_at"] is None:
                    result.to_stop.append(row)
                else:
                    result.already_requested += 1
        _end_queued(conn, [row._mapping["id"] for row in result.ended], now)
        stop_ids = [row._mapping["id"] for row in result.to_stop]
        for ids in chunked(stop_ids):
            conn.execute(
                update(executions)
                .where(executions.c.id.in_(ids), executions.c.state.in_(("sent", "running")))
                .values(cancel_requested_at=now, cancel_sent_at=now)
            )
        if not (result.ended or result.to_stop or result.already_requested):
            what = (
                f"execution {execution_id}" if execution_id else f"every execution of {command_id}"
            )
            raise Conflict(f"nothing to cancel: {what} has already ended")
        if execution_id is None and command._mapping["cancelled_at"] is None:
            conn.execute(
                update(commands).where(commands.c.id == command_id).values(cancelled_at=now)
            )
        mark_done(conn, [command_id], now)
        if audit is not None:
            result.audit = audit(result)
            outbox.stage(conn, result.audit)
    return result


def _end_queued(conn: Connection, ids: Sequence[str], now: float) -> None:
    for part in chunked(ids):
        conn.execute(
            update(executions)
            .where(executions.c.id.in_(part), executions.c.state == "queued")
            .values(
                state="cancelled",
                ended_at=now,
                cancel_requested_at=now,
                reason=CANCEL_REASON,
            )
        )


def mark_done(conn: Connection, command_ids: Iterable[str], now: float) -> None:
    """Set ``done_at`` on those of ``command_ids`` whose executions have all ended."""
    active = (
        select(executions.c.id)
        .where(executions.c.command_id == commands.c.id, executions.c.state.in_(_ACTIVE))
        .correlate(commands)
        .exists()
    )
    for part in chunked(sorted(set(command_ids))):
        conn.execute(
            update(commands)
            .where(commands.c.id.in_(part), commands.c.done_at.is_(None), ~active)
            .values(done_at=now)
        )


def execution(engine: Engine, command_id: str, execution_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            select(*EXECUTION_COLUMNS).where(
                executions.c.id == execution_id, executions.c.command_id == command_id
            )
        ).first()
    if row is None:
        raise NotFound(f"no execution {execution_id} in command {command_id}")
    return execution_answer(row)


def rerun_nodes(engine: Engine, command_id: str, which: str) -> list[str]:
    """The nodes of the command's executions: all, or those that did not succeed."""
    query = select(executions.c.node_id).where(executions.c.command_id == command_id)
    if which == "failed":
        query = query.where(executions.c.state.in_(TERMINAL - {"succeeded"}))
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(executions.c.seq_no)).scalars())


def chunked(items: Sequence[str], size: int = IN_CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

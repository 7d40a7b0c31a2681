"""Agents' reports → the database, exactly once (one transaction per batch).

A report is recorded once per (execution, seq): the ``reports`` table holds
every pair seen, so a report delivered again (a resent spool, a re-read
stream entry) is recognised and skipped. A report for an unknown execution or
from another node than the execution's is counted and dropped. States only
move forward: ``started`` and ``output`` make a queued or sent execution
``running``; ``finished`` and ``refused`` end one that has not ended (a
``finished`` also corrects what the core ended without the node: ``expired``,
or ``cancelled`` before it started — the node did run it after all; a
``started`` of such an execution is answered with a ``cancel``); ``refused``
with code ``replayed`` is informational and changes nothing (nor is its seq
recorded, so the execution's own seq 0 still counts).

What was recorded comes back as progress events and audit events for the
caller to publish after the commit, with the commands whose batch window
has a free place now.

Audit events are not lost in a crash after the commit and before their
append (no outbox: the report stays pending in ``results`` until then): a
``finished`` or ``refused`` report seen again whose end is the one recorded
(same state and end time) gives its ``execution.finish`` event again, built
from the report itself, under the same key
(``execution.finish:<execution id>:<seq>``): the audit writer chains it if
the first never arrived and drops it otherwise.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Connection, Engine, select, tuple_, update

from sm_commands import command_audit, progress, records
from sm_commands.schema import (
    TERMINAL,
    commands,
    executions,
    insert_ignoring,
    output_chunks,
    reports,
)
from sm_shared.audit import AuditEvent
from sm_shared.database import writer

EARLY: Final = frozenset({"queued", "sent"})


@dataclass(frozen=True, slots=True)
class Report:
    """One agent report as the gateway appended it: the node it came from and the message."""

    node_id: str
    message: dict[str, Any]


@dataclass
class Counts:
    """What a batch did with its reports."""

    reports: int = 0
    recorded: int = 0
    duplicates: int = 0
    unknown: int = 0
    wrong_node: int = 0
    informational: int = 0
    late: int = 0

    def nonzero(self) -> dict[str, int]:
        return {
            name: getattr(self, name) for name in self.__dataclass_fields__ if getattr(self, name)
        }


@dataclass
class Outcome:
    counts: Counts = field(default_factory=Counts)
    events: list[progress.Event] = field(default_factory=list)
    audit: list[AuditEvent] = field(default_factory=list)
    # Commands with a batch window in which an execution ended (a place is free).
    freed: set[str] = field(default_factory=set)
    # (execution id, node id) of executions the node started although they were
    # cancelled before they started: they get a ``cancel`` frame.
    cancel_again: list[tuple[str, str]] = field(default_factory=list)


def ended_without_node(ex: dict[str, Any]) -> bool:
    """The core ended it without a word from the node: expired, or cancelled unstarted."""
    return ex["state"] == "expired" or (ex["state"] == "cancelled" and ex["started_at"] is None)


_COLUMNS: Final = (
    executions.c.id,
    executions.c.command_id,
    executions.c.node_id,
    executions.c.state,
    executions.c.last_seq,
    executions.c.started_at,
    executions.c.ended_at,
    executions.c.code,
    executions.c.cancel_requested_at,
    commands.c.actor,
    commands.c.window,
)


class _Batch:
    def __init__(self, conn: Connection, outcome: Outcome) -> None:
        self.conn = conn
        self.outcome = outcome
        self.found: dict[str, dict[str, Any]] = {}
        self.changes: dict[str, dict[str, Any]] = {}
        self.seen: set[tuple[str, int]] = set()
        self.new_reports: list[dict[str, Any]] = []
        self.chunks: list[dict[str, Any]] = []
        self.touched: set[str] = set()
        # Keys of the audit events this batch gives (each once).
        self.audited: set[str | None] = set()

    def load(self, batch: Sequence[Report]) -> None:
        """The batch's executions, and which of its (execution, seq) pairs are recorded."""
        ids = list(dict.fromkeys(report.message["execution_id"] for report in batch))
        for part in records.chunked(ids):
            for row in self.conn.execute(
                select(*_COLUMNS)
                .join(commands, commands.c.id == executions.c.command_id)
                .where(executions.c.id.in_(part))
            ):
                self.found[row.id] = dict(row._mapping)
        # Only the batch's own pairs: an execution's earlier reports may be very many.
        pairs = list(
            dict.fromkeys((r.message["execution_id"], int(r.message["seq"])) for r in batch)
        )
        key = tuple_(reports.c.execution_id, reports.c.seq)
        for start in range(0, len(pairs), records.IN_CHUNK):
            self.seen.update(
                (x, s)
                for x, s in self.conn.execute(
                    select(reports.c.execution_id, reports.c.seq).where(
                        key.in_(pairs[start : start + records.IN_CHUNK])
                    )
                )
            )

    def change(self, ex: dict[str, Any], **values: Any) -> None:
        ex.update(values)
        self.changes.setdefault(ex["id"], {}).update(values)

    def ended(self, ex: dict[str, Any]) -> None:
        self.touched.add(ex["command_id"])
        if ex["window"] is not None:
            self.outcome.freed.add(ex["command_id"])

    def apply(self, report: Report) -> None:
        counts = self.outcome.counts
        message = report.message
        execution_id = message["execution_id"]
        ex = self.found.get(execution_id)
        if ex is None:
            counts.unknown += 1
            return
        if ex["node_id"] != report.node_id:
            counts.wrong_node += 1
            return
        kind = message["type"]
        if kind == "refused" and message["code"] == "replayed":
            counts.informational += 1
            return
        seq = int(message["seq"])
        if (execution_id, seq) in self.seen:
            counts.duplicates += 1
            self._audit_again(ex, message, seq)
            return
        self.seen.add((execution_id, seq))
        self.new_reports.append({"execution_id": execution_id, "seq": seq})
        counts.recorded += 1
        if ex["last_seq"] is None or seq > ex["last_seq"]:
            self.change(ex, last_seq=seq)
        at = float(message["at"])
        if kind == "started":
            self._running(ex, at)
        elif kind == "output":
            self._output(ex, message, seq, at)
        elif kind == "finished":
            self._finished(ex, message, seq)
        elif kind == "refused":
            self._refused(ex, message, seq, at)

    def _event(self, ex: dict[str, Any], state: str, at: float, **extra: Any) -> None:
        self.outcome.events.append(
            progress.execution_event(ex["command_id"], ex["id"], ex["node_id"], state, at, **extra)
        )

    def _running(self, ex: dict[str, Any], at: float) -> None:
        if ex["state"] in EARLY:
            self.change(ex, state="running", started_at=at)
            self._event(ex, "running", at)
        elif ex["state"] == "cancelled" and ex["started_at"] is None:
            self.outcome.cancel_again.append((ex["id"], ex["node_id"]))

    def _output(self, ex: dict[str, Any], message: dict[str, Any], seq: int, at: float) -> None:
        self._running(ex, at)
        try:
            data = base64.b64decode(message["data"], validate=True)
        except (binascii.Error, ValueError):
            data = b""
        self.chunks.append(
            {
                "execution_id": ex["id"],
                "stream": message["stream"],
                "offset": int(message["offset"]),
                "seq": seq,
                "data": data,
            }
        )
        self.outcome.events.append(
            progress.output_event(
                ex["command_id"],
                ex["id"],
                ex["node_id"],
                message["stream"],
                int(message["offset"]),
                data,
                at,
            )
        )

    def _audit(self, event: AuditEvent) -> None:
        if event.key not in self.audited:
            self.audited.add(event.key)
            self.outcome.audit.append(event)

    def _audit_again(self, ex: dict[str, Any], message: dict[str, Any], seq: int) -> None:
        """A report recorded before: its ``execution.finish`` again if its end is the one
        recorded (its first append may have been lost in a crash)."""
        kind = message["type"]
        if kind == "finished":
            same = ex["state"] == message["status"] and ex["ended_at"] == float(message["ended_at"])
            if same:
                self._audit(_finished_audit(ex, message, seq))
        elif kind == "refused":
            same = ex["state"] == "refused" and ex["code"] == message["code"]
            if same and ex["ended_at"] == float(message["at"]):
                self._audit(_refused_audit(ex, message, seq))

    def _finished(self, ex: dict[str, Any], message: dict[str, Any], seq: int) -> None:
        if ex["state"] in TERMINAL and not ended_without_node(ex):
            self.outcome.counts.late += 1
            return
        status = message["status"]
        values: dict[str, Any] = {
            "state": status,
            "exit_code": message["exit_code"],
            "signal": message.get("signal"),
            "error": message.get("error"),
            "started_at": float(message["started_at"]),
            "ended_at": float(message["ended_at"]),
            "reason": None,
        }
        for name in ("stdout", "stderr"):
            summary = message[name]
            values[f"{name}_bytes"] = int(summary["bytes"])
            values[f"{name}_sha256"] = summary["sha256"]
            values[f"{name}_truncated"] = 1 if summary["truncated"] else 0
        self.change(ex, **values)
        at = float(message["ended_at"])
        self._event(
            ex,
            status,
            at,
            exit_code=message["exit_code"],
            with_exit_code=True,
            error=message.get("error"),
        )
        self._audit(_finished_audit(ex, message, seq))
        self.ended(ex)

    def _refused(self, ex: dict[str, Any], message: dict[str, Any], seq: int, at: float) -> None:
        if ex["state"] in TERMINAL:
            self.outcome.counts.late += 1
            return
        reason = str(message["reason"])
        code = str(message["code"])
        self.change(ex, state="refused", code=code, reason=reason, ended_at=at)
        self._event(ex, "refused", at, reason=reason)
        self._audit(_refused_audit(ex, message, seq))
        self.ended(ex)

    def write(self, now: float) -> None:
        insert_ignoring(self.conn, reports, self.new_reports)
        insert_ignoring(self.conn, output_chunks, self.chunks)
        for execution_id, values in self.changes.items():
            self.conn.execute(
                update(executions).where(executions.c.id == execution_id).values(**values)
            )
        records.mark_done(self.conn, self.touched, now)


def _finished_audit(ex: dict[str, Any], message: dict[str, Any], seq: int) -> AuditEvent:
    """The ``execution.finish`` of a ``finished`` report (from the report alone)."""
    return command_audit.execution_finished(
        ex["actor"],
        ex["command_id"],
        ex["id"],
        ex["node_id"],
        message["status"],
        float(message["ended_at"]),
        end=seq,
        exit_code=message["exit_code"],
        streams={name: message[name] for name in ("stdout", "stderr")},
    )


def _refused_audit(ex: dict[str, Any], message: dict[str, Any], seq: int) -> AuditEvent:
    """The ``execution.finish`` of a ``refused`` report (from the report alone)."""
    return command_audit.execution_finished(
        ex["actor"],
        ex["command_id"],
        ex["id"],
        ex["node_id"],
        "refused",
        float(message["at"]),
        end=seq,
        reason=str(message["reason"]),
        code=str(message["code"]),
    )


def record(engine: Engine, batch: Sequence[Report], now: float) -> Outcome:
    """Record ``batch`` (in order) in one write transaction."""
    outcome = Outcome()
    outcome.counts.reports = len(batch)
    if not batch:
        return outcome
    with writer(engine).begin() as conn:
        work = _Batch(conn, outcome)
        work.load(batch)
        for report in batch:
            work.apply(report)
        work.write(now)
    return outcome

"""Execution reports kept on disk until the core acknowledges them.

Every report (``refused``, ``started``, ``output``, ``finished``) is written
here, flushed to the disk, and only then sent; it stays until the gateway's
``result_ack {execution_id, upto}`` (cumulative per execution) says the core
holds it. On every new connection the unacknowledged reports go out again
first, oldest first. A killed agent (``kill -9``) or a lost connection loses
none: the core records each (execution_id, seq) once.

One file per execution with reports left, ``<state_dir>/reports/<execution_id>``,
one record per line::

    {"v":1,"type":"output",…}   a report, its JSON exactly as sent
    ack <upto>                  reports with seq <= upto are acknowledged

The file is deleted once its last report (``refused`` or ``finished``) is
acknowledged. Acks are appended without a flush (losing one only sends a
report twice). A torn last line (a crash mid-write, never sent) is cut off.

Memory: per report its seq, offset and length; the JSON is read back from
the file when sent. Bounded: an execution's output reports are bounded by
``max_output_bytes`` per stream, and new executions are refused (``busy``)
while more than :data:`MAX_PENDING_EXECUTIONS` executions or
:data:`MAX_PENDING_BYTES` bytes of reports wait for acknowledgement.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sm_agent.orders import EXECUTION_ID

FINAL_TYPES = ("refused", "finished")
MAX_PENDING_EXECUTIONS = 4096
MAX_PENDING_BYTES = 256 * 1024 * 1024

log = logging.getLogger(__name__)


@dataclass
class _Execution:
    path: Path
    # seq -> (serial, offset, length), reports not acknowledged yet.
    reports: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    last_seq: int = -1
    final: bool = False


class ReportSpool:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._executions: dict[str, _Execution] = {}
        # Send order: serial -> (execution_id, seq); _serials sorted, may hold gone ones.
        self._by_serial: dict[int, tuple[str, int]] = {}
        self._serials: list[int] = []
        self.next_serial = 0
        self.pending_bytes = 0
        # Called after each report is kept (the link's sender waits on it).
        self.listener: Callable[[], None] | None = None
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for path in sorted(directory.iterdir(), key=_created):
            if path.is_file() and EXECUTION_ID.fullmatch(path.name):
                self._load(path)

    # ------------------------------------------------------------ what it holds

    def __len__(self) -> int:
        """Executions with reports not acknowledged."""
        return len(self._executions)

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._executions

    def unacknowledged(self) -> int:
        return len(self._by_serial)

    def full(self) -> bool:
        return (
            len(self._executions) >= MAX_PENDING_EXECUTIONS
            or self.pending_bytes >= MAX_PENDING_BYTES
        )

    def last_seq(self, execution_id: str) -> int:
        execution = self._executions.get(execution_id)
        return -1 if execution is None else execution.last_seq

    def unfinished(self) -> list[str]:
        """Executions whose last report was never written (the agent stopped mid-run)."""
        return [i for i, e in self._executions.items() if not e.final]

    def next_after(self, serial: int) -> tuple[int, bytes] | None:
        """The oldest unacknowledged report after ``serial``: (its serial, its JSON)."""
        for position in range(bisect_right(self._serials, serial), len(self._serials)):
            found = self._serials[position]
            where = self._by_serial.get(found)
            if where is None:
                continue
            execution_id, seq = where
            execution = self._executions[execution_id]
            _, offset, length = execution.reports[seq]
            with open(execution.path, "rb") as file:
                file.seek(offset)
                return found, file.read(length)
        return None

    def read_all(self, execution_id: str) -> list[dict[str, Any]]:
        """Every report still kept for ``execution_id``, in seq order."""
        execution = self._executions.get(execution_id)
        if execution is None:
            return []
        found = []
        with open(execution.path, "rb") as file:
            for seq in sorted(execution.reports):
                _, offset, length = execution.reports[seq]
                file.seek(offset)
                found.append(json.loads(file.read(length)))
        return found

    # ------------------------------------------------------------ changes

    def append(self, report: dict[str, Any]) -> None:
        """Keep ``report`` (on the disk when this returns)."""
        execution_id = str(report["execution_id"])
        seq = int(report["seq"])
        execution = self._executions.get(execution_id)
        if execution is None:
            execution = self._executions[execution_id] = _Execution(self._directory / execution_id)
        if seq <= execution.last_seq or execution.final:
            raise ValueError(f"report {seq} of {execution_id} after {execution.last_seq}")
        raw = json.dumps(report, separators=(",", ":")).encode()
        fd = os.open(execution.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            offset = os.fstat(fd).st_size
            os.write(fd, raw + b"\n")
            os.fdatasync(fd)
        finally:
            os.close(fd)
        self._keep(execution_id, execution, seq, offset, len(raw), report["type"])
        if self.listener is not None:
            self.listener()

    def acknowledge(self, execution_id: str, upto: int) -> int:
        """Reports of ``execution_id`` with seq <= ``upto`` are durable in the core; how many left."""
        execution = self._executions.get(execution_id)
        if execution is None:
            return 0
        gone = [seq for seq in execution.reports if seq <= upto]
        for seq in gone:
            serial, _, length = execution.reports.pop(seq)
            self._by_serial.pop(serial, None)
            self.pending_bytes -= length
        if execution.final and not execution.reports:
            del self._executions[execution_id]
            with contextlib.suppress(FileNotFoundError):
                execution.path.unlink()
        elif gone:
            with open(execution.path, "ab") as file:
                file.write(b"ack %d\n" % upto)
        if len(self._serials) > 2 * len(self._by_serial) + 1024:
            self._serials = [s for s in self._serials if s in self._by_serial]
        return len(gone)

    # ------------------------------------------------------------ inside

    def _keep(
        self,
        execution_id: str,
        execution: _Execution,
        seq: int,
        offset: int,
        length: int,
        kind: str,
    ) -> None:
        serial = self.next_serial
        self.next_serial += 1
        execution.reports[seq] = (serial, offset, length)
        execution.last_seq = seq
        execution.final = kind in FINAL_TYPES
        self.pending_bytes += length
        self._by_serial[serial] = (execution_id, seq)
        self._serials.append(serial)

    def _load(self, path: Path) -> None:
        execution_id = path.name
        execution = self._executions[execution_id] = _Execution(path)
        acked = -1
        position = 0
        with open(path, "rb") as file:
            for line in file:
                if not line.endswith(b"\n"):
                    break
                body = line[:-1]
                try:
                    if body.startswith(b"ack "):
                        acked = max(acked, int(body[4:]))
                    else:
                        report = json.loads(body)
                        seq = int(report["seq"])
                        if report["execution_id"] != execution_id or seq <= execution.last_seq:
                            raise ValueError("out of order")
                        self._keep(
                            execution_id, execution, seq, position, len(body), report["type"]
                        )
                except (ValueError, KeyError, TypeError):
                    log.warning(
                        "%s: damaged record at byte %d; the rest is cut off", path, position
                    )
                    break
                position += len(line)
        if position != path.stat().st_size:
            os.truncate(path, position)
        if not execution.reports and not execution.final and acked < 0:
            # Created but nothing written: forget it.
            del self._executions[execution_id]
            path.unlink()
            return
        if acked >= 0:
            self.acknowledge(execution_id, acked)


def _created(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0

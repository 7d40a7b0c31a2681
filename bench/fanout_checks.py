"""After a fan-out: every execution terminal exactly once, seen from the API, the audit and the database.

- :func:`command_document`: ``GET /api/v1/commands/{id}`` — the summary and
  every execution (state, exit code, stream digests, timestamps);
- :func:`audit_finishes`: ``GET /api/v1/audit?action=execution.finish`` since
  the command was posted, counting this command's records per execution
  (exactly one each is expected: it is emitted when a result is first recorded);
- :func:`database_account`: the commands database, read-only: no node with two
  executions of the command, and how many reports (rows of ``reports``, one
  per (execution_id, seq) recorded) each execution holds: 2 for ``true``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

AUDIT_PAGE = 500


def unix(value: object) -> float | None:
    """A timestamp of the API (Unix seconds, or RFC 3339 text) as Unix seconds."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


async def command_document(api: httpx.AsyncClient, command_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/v1/commands/{command_id}")
    if response.status_code != 200:
        raise RuntimeError(f"GET command: HTTP {response.status_code} {response.text[:500]}")
    body: dict[str, Any] = response.json()
    return body


async def audit_finishes(
    api: httpx.AsyncClient, command_id: str, since: float, expected: int, within: float = 60
) -> tuple[Counter[str], str]:
    """``execution.finish`` records of the command per execution id (their ``target`` is
    ``execution:<id>``), waiting (bounded) for ``expected`` of them (the audit writer runs
    behind the results); and a note."""
    deadline = time.monotonic() + within
    while True:
        per_execution: Counter[str] = Counter()
        cursor: str | None = None
        while True:
            params: dict[str, str | int | float] = {
                "action": "execution.finish",
                "since": since - 60,
                "limit": AUDIT_PAGE,
            }
            if cursor:
                params["cursor"] = cursor
            response = await api.get("/api/v1/audit", params=params)
            if response.status_code != 200:
                return (
                    per_execution,
                    f"audit not checked: HTTP {response.status_code} {response.text[:200]}",
                )
            page = response.json()
            for record in page.get("items", []):
                detail = record.get("detail") or {}
                if detail.get("command_id") == command_id:
                    per_execution[str(record.get("target")).removeprefix("execution:")] += 1
            cursor = page.get("next_cursor")
            if not cursor:
                break
        total = sum(per_execution.values())
        if total >= expected or time.monotonic() > deadline:
            return (
                per_execution,
                f"audit: {total} execution.finish records for {len(per_execution)} executions",
            )
        await asyncio.sleep(1.0)


def database_account(database: Path, command_id: str) -> tuple[int, str]:
    """The commands database's account of one command: how many nodes hold more than one
    execution of it, and a note with how many reports each execution has recorded
    (``reports`` holds one row per (execution_id, seq) recorded: ``true`` makes 2)."""
    if not database.exists():
        return 0, f"{database} not found: database not checked"
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if not {"executions", "reports"} <= tables:
            return 0, f"{database.name} has no executions and reports tables: database not checked"
        (twice,) = conn.execute(
            "SELECT count(*) FROM (SELECT node_id FROM executions WHERE command_id = ? "
            "GROUP BY node_id HAVING count(*) > 1)",
            (command_id,),
        ).fetchone()
        per_execution = Counter(
            int(n)
            for (n,) in conn.execute(
                "SELECT count(r.seq) FROM executions e LEFT JOIN reports r ON r.execution_id = e.id "
                "WHERE e.command_id = ? GROUP BY e.id",
                (command_id,),
            )
        )
        shown = ", ".join(f"{n} reports: {k}" for n, k in sorted(per_execution.items()))
        return int(twice), f"database: executions by reports recorded ({shown})"
    finally:
        conn.close()

"""After a fan-out: every execution terminal exactly once, seen from the API, the audit and the database.

- :func:`command_document`: ``GET /api/v1/commands/{id}`` — the summary and
  every execution (state, exit code, stream digests, timestamps);
- :func:`audit_finishes`: ``GET /api/v1/audit?action=execution.finish`` paged
  back to the command's creation, counting the records of this command per
  node (exactly one each is expected: the audit is emitted when a result is
  first recorded);
- :func:`duplicate_reports`: the commands database read-only, every table
  with both an ``execution_id`` and a ``seq`` column checked for a
  (execution_id, seq) held more than once (recording is idempotent on it).
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
    """``execution.finish`` records of the command per node id, waiting (bounded) for
    ``expected`` of them (the audit writer runs behind the results); and a note."""
    deadline = time.monotonic() + within
    while True:
        per_node: Counter[str] = Counter()
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"action": "execution.finish", "limit": AUDIT_PAGE}
            if cursor:
                params["cursor"] = cursor
            response = await api.get("/api/v1/audit", params=params)
            if response.status_code != 200:
                return (
                    per_node,
                    f"audit not checked: HTTP {response.status_code} {response.text[:200]}",
                )
            page = response.json()
            older = False
            for record in page.get("items", []):
                at = unix(record.get("at"))
                if at is not None and at < since - 5:
                    older = True
                detail = record.get("detail") or {}
                if detail.get("command_id") == command_id:
                    per_node[str(detail.get("node_id"))] += 1
            cursor = page.get("next_cursor")
            if older or not cursor:
                break
        total = sum(per_node.values())
        if total >= expected or time.monotonic() > deadline:
            return per_node, f"{total} execution.finish audit records for {len(per_node)} nodes"
        await asyncio.sleep(1.0)


def duplicate_reports(database: Path) -> tuple[int, str]:
    """(execution_id, seq) pairs stored more than once over every table holding both; a note."""
    if not database.exists():
        return 0, f"{database} not found: database not checked"
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not str(row[0]).startswith("sqlite_")
        ]
        checked = []
        duplicates = 0
        for table in tables:
            columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
            if {"execution_id", "seq"} <= columns:
                (count,) = conn.execute(
                    f'SELECT count(*) FROM (SELECT 1 FROM "{table}" '  # noqa: S608 (names read from the schema)
                    "GROUP BY execution_id, seq HAVING count(*) > 1)"
                ).fetchone()
                duplicates += int(count)
                checked.append(table)
        if not checked:
            return 0, f"no table of {database.name} has execution_id and seq: database not checked"
        return duplicates, f"(execution_id, seq) held twice in {', '.join(checked)}: {duplicates}"
    finally:
        conn.close()

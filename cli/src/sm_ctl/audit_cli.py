"""``smctl audit list`` and ``smctl audit verify``: the core's hash-chained audit log.

``list`` prints records newest first (``--actor``, ``--action``, ``--target``,
``--since``/``--until`` as ISO 8601 or Unix seconds, ``--limit`` records in
all, fetched page by page). ``verify`` asks the core to check the whole chain:
exit status 0 and ``ok`` when it holds, 1 naming the first bad record
otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from sm_ctl.fleet_cli import err, fail, out, with_remote
from sm_ctl.remote import DataDirOption, KeyOption, Remote, ServerOption

audit_app = typer.Typer(help="The audit log: list it, verify its hash chain.", no_args_is_help=True)
PAGE = 500


def unix_time(name: str, text: str | None) -> float | None:
    """ISO 8601 (UTC unless it says otherwise) or Unix seconds."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--{name} {text!r} is neither an ISO 8601 time nor Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


@audit_app.command("list")
def audit_list(
    actor: Annotated[str | None, typer.Option(help="Only this user or client")] = None,
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. command.create")
    ] = None,
    target: Annotated[str | None, typer.Option(help="Only this target, e.g. node:<id>")] = None,
    since: Annotated[
        str | None, typer.Option(help="At or after (ISO 8601 or Unix seconds)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before (ISO 8601 or Unix seconds)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Records to show")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON record per line")] = False,
    server: ServerOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List audit records, newest first."""
    params: dict[str, Any] = {
        "actor": actor,
        "action": action,
        "target": target,
        "since": unix_time("since", since),
        "until": unix_time("until", until),
    }

    async def work(remote: Remote) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        cursor = None
        while len(records) < limit:
            page = await remote.get(
                "/api/v1/audit", **params, limit=min(PAGE, limit - len(records)), cursor=cursor
            )
            records += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return records

    records = with_remote(server, key, data_dir, work)
    if as_json:
        for record in records:
            out.print(orjson.dumps(record).decode(), markup=False)
        return
    table = Table(title=f"{len(records)} audit records", title_justify="left")
    for column in ("SEQ", "AT (UTC)", "ACTOR", "ACTION", "TARGET", "DETAIL"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(
            str(record["seq"]),
            when(record["at"]),
            escape(record["actor"]),
            escape(record["action"]),
            escape(record["target"]),
            escape(orjson.dumps(record["detail"], option=orjson.OPT_SORT_KEYS).decode()),
        )
    out.print(table)


@audit_app.command("verify")
def audit_verify(
    server: ServerOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Verify the audit log's hash chain (exit status 1 when a record does not match)."""

    async def work(remote: Remote) -> dict[str, Any]:
        verdict: dict[str, Any] = await remote.get("/api/v1/audit/verify")
        return verdict

    verdict = with_remote(server, key, data_dir, work)
    if verdict["ok"]:
        head = verdict.get("head") or "-"
        out.print(f"ok: {verdict['records']} records, head {head}", markup=False)
        return
    bad = verdict.get("first_bad") or {}
    err.print(
        f"[bold red]NOT OK:[/] record {bad.get('seq')}: {escape(str(bad.get('reason')))} "
        f"({verdict['records']} records before it verified)"
    )
    raise typer.Exit(1)

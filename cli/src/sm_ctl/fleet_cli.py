"""``smctl nodes`` and ``smctl node show ID``: the fleet as tables, from a running core.

``nodes`` lists every node (all pages) with id, host name, status, group,
labels and last seen; ``--status``, ``--group`` and ``-t SELECTOR`` (a label
selector, as the API takes it) narrow it. ``node show`` prints one node's
facts, labels and status, and its latest metrics when the core has any.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sm_ctl.remote import DataDirOption, KeyOption, Remote, RemoteError, ServerOption, endpoint

# Piped output is not squeezed into 80 columns (rich's default off a terminal).
PIPE_WIDTH = 240


def console(*, stderr: bool = False, markup: bool = True) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(
        stderr=stderr, soft_wrap=True, highlight=False, emoji=False, markup=markup, width=width
    )


out = console()
err = console(stderr=True)

node_app = typer.Typer(help="One node of the fleet.", no_args_is_help=True)

T = TypeVar("T")
PAGE = 1000


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def with_remote(
    server: str | None,
    key: str | None,
    data_dir: Any,
    work: Callable[[Remote], Awaitable[T]],
) -> T:
    """Run ``work`` with a connection to the core; problems end the command with a message."""

    async def session() -> T:
        remote = await Remote.connect(endpoint(server, key, data_dir))
        try:
            return await work(remote)
        finally:
            await remote.aclose()

    try:
        return asyncio.run(session())
    except RemoteError as exc:
        raise fail(str(exc)) from None


class Status(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


def ago(text: str | None, now: datetime | None = None) -> str:
    """``12s ago``/``3m ago``/``2h ago``/``4d ago`` for an ISO time; ``never`` for None."""
    if not text:
        return "never"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


async def all_nodes(remote: Remote, **filters: Any) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    while True:
        page = await remote.get("/api/v1/nodes", limit=PAGE, offset=len(nodes), **filters)
        nodes += page["items"]
        if not page["items"] or len(nodes) >= page["total"]:
            return nodes


def nodes(
    status: Annotated[
        Status | None, typer.Option("--status", help="Only online or offline nodes")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Only nodes of this group")
    ] = None,
    selector: Annotated[
        str | None,
        typer.Option(
            "--selector", "-t", help="A label selector, e.g. 'role in (db,cache),env=prod'"
        ),
    ] = None,
    server: ServerOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List the nodes of a running core (id, host name, status, group, labels, last seen)."""

    async def work(remote: Remote) -> list[dict[str, Any]]:
        return await all_nodes(
            remote,
            status=status.value if status else None,
            group=group,
            selector=selector,
            sort="hostname",
        )

    found = with_remote(server, key, data_dir, work)
    table = Table(title=f"{len(found)} node{'s' if len(found) != 1 else ''}", title_justify="left")
    table.add_column("ID", no_wrap=True, min_width=36)  # whole, for copying
    for column in ("HOSTNAME", "STATUS", "GROUP", "LABELS", "LAST SEEN"):
        table.add_column(column, overflow="fold")
    for node in found:
        status_text = node["status"]
        style = "green" if status_text == "online" else "red"
        table.add_row(
            node["id"],
            node["hostname"],
            f"[{style}]{status_text}[/]",
            escape(node.get("group") or "-"),
            escape(labels_text(node.get("labels") or {})),
            ago(node.get("last_seen")),
        )
    out.print(table)


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return str(value)


def _flat(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Nested facts/metrics as (dotted name, text) rows."""
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for name in value:
            rows += _flat(f"{prefix}.{name}" if prefix else str(name), value[name])
        return rows
    if isinstance(value, list):
        if all(not isinstance(item, dict | list) for item in value):
            return [(prefix, ", ".join(str(item) for item in value))]
        rows = []
        for index, item in enumerate(value):
            rows += _flat(f"{prefix}[{index}]", item)
        return rows
    if isinstance(value, float):
        return [(prefix, f"{value:g}")]
    return [(prefix, str(value))]


@node_app.command("show")
def node_show(
    node_id: Annotated[str, typer.Argument(metavar="ID", help="The node's id")],
    server: ServerOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show one node: status, group, labels, facts and its latest metrics."""

    async def work(remote: Remote) -> tuple[dict[str, Any], dict[str, Any] | None]:
        node = await remote.get(f"/api/v1/nodes/{node_id}")
        latest: dict[str, Any] | None = None
        try:
            page = await remote.get("/api/v1/metrics/latest", node_id=[node_id], limit=1)
            latest = page["items"][0] if page.get("items") else None
        except RemoteError as exc:
            if exc.status not in (403, 404):
                raise
        return node, latest

    node, latest = with_remote(server, key, data_dir, work)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    style = "green" if node["status"] == "online" else "red"
    table.add_row("id", node["id"])
    table.add_row("name", escape(node["name"]))
    table.add_row("hostname", escape(node["hostname"]))
    table.add_row(
        "status", f"[{style}]{node['status']}[/] (last seen {ago(node.get('last_seen'))})"
    )
    table.add_row("group", escape(node.get("group") or "-"))
    table.add_row("labels", escape(labels_text(node.get("labels") or {})))
    table.add_row("enrolled", node.get("enrolled_at") or "-")
    if node.get("duplicate_of"):
        table.add_row("duplicate of", node["duplicate_of"])
    for name, text in _flat("", node.get("facts") or {}):
        if name == "memory_total" and text.isdigit():
            text = _bytes(float(text))
        table.add_row(f"facts.{name}", escape(text))
    if latest is not None:
        for name, text in _flat("", {k: v for k, v in latest.items() if k != "node_id"}):
            table.add_row(f"latest.{name}", escape(text))
    else:
        table.add_row("latest", "no metrics yet")
    out.print(table)

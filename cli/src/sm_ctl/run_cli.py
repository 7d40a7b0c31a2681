"""``smctl run``: one command on many nodes, each node's output as it arrives.

Targets (at least one; several are OR'ed, as the API's target is a union)::

    -t all                      every node (same as --all)
    -t group=web                the group ``web`` (same as -g web)
    -t 'role in (db,cache)'     anything else is a label selector; several
                                selectors are AND'ed into one (comma-joined)
    -g GROUP                    a group (repeatable)
    -n id1,id2                  node ids

What runs (one of)::

    smctl run -t all -- uname -a          several words: an argv, no shell
    smctl run -t all -- 'df -h | tail -1' one word: a script for /bin/sh -c
    smctl run -t all --service nginx restart   (UNIT ACTION; `- list` lists units)
    smctl run -t all --logs nginx --lines 50 [--follow]  (a unit, or a /path)

``--batch N`` or ``--batch P%`` keeps at most that many executions in flight;
``--timeout S`` bounds each execution, ``--expires S`` how long an offline
node may still receive it, ``-e NAME=VALUE`` adds to the environment,
``--cwd``, ``--user``, ``--note``.

The command is posted, then its progress is followed on ``/events/ws``
(topic ``command:<id>``) and re-read over REST (the command and each
execution's output) so nothing is missed; without a reachable gateway it
polls REST. Output lines are printed as ``<node> | <line>`` (stdout lines on
stdout, stderr lines on stderr as ``<node> ! <line>``); ``<node>`` is the
host name (with the id's start when host names repeat). A progress bar
(done/total) shows on a terminal; a summary table (node, state, exit code,
duration) ends the run. Exit status: 0 when every execution succeeded, 1
otherwise, 130 after Ctrl-C — which cancels the command and prints what was
cancelled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from sm_ctl.fleet_cli import all_nodes, err, fail
from sm_ctl.fleet_cli import console as fleet_console
from sm_ctl.remote import DataDirOption, KeyOption, Remote, RemoteError, ServerOption, endpoint

TERMINAL: Final = frozenset({"succeeded", "failed", "timed_out", "cancelled", "expired", "refused"})
SYNC_EVERY: Final = 2.0  # REST re-sync while events flow
POLL_EVERY: Final = 0.5  # without events
OUTPUT_PAGE: Final = 65536
DRAIN_TRIES: Final = 25
CANCEL_WAIT: Final = 10.0
EXIT_INTERRUPTED: Final = 130


class BadInput(ValueError):
    """The options do not make a command."""


def build_target(
    targets: list[str], groups: list[str], node_ids: str | None, every: bool
) -> dict[str, Any]:
    """The API's Target from the options (module docstring)."""
    target: dict[str, Any] = {}
    selectors: list[str] = []
    group_names = list(groups)
    for text in targets:
        value = text.strip()
        if value == "all":
            every = True
        elif value.startswith("group="):
            name = value.removeprefix("group=").strip()
            if not name:
                raise BadInput("-t group= needs a group name (-t group=web)")
            group_names.append(name)
        elif value:
            selectors.append(value)
        else:
            raise BadInput("-t needs a selector, group=NAME or all")
    if every:
        target["all"] = True
    if group_names:
        target["groups"] = list(dict.fromkeys(group_names))
    if selectors:
        target["selector"] = ",".join(selectors)
    if node_ids is not None:
        ids = [part.strip() for part in node_ids.split(",") if part.strip()]
        if not ids:
            raise BadInput("-n needs node ids (-n id1,id2)")
        target["node_ids"] = list(dict.fromkeys(ids))
    if not target:
        raise BadInput("say which nodes: -t SELECTOR|group=NAME|all, -g GROUP, -n IDS or --all")
    return target


def build_body(
    *,
    target: dict[str, Any],
    words: list[str],
    service: tuple[str, str] | None,
    logs: str | None,
    lines: int | None,
    follow: bool,
    env: list[str],
    cwd: str | None,
    user: str | None,
    timeout: int,
    expires: int | None,
    batch: str | None,
    note: str | None,
) -> dict[str, Any]:
    """The ``POST /api/v1/commands`` body (module docstring for the rules)."""
    kinds = [
        kind for kind, given in (("shell", words), ("service", service), ("logs", logs)) if given
    ]
    if len(kinds) != 1:
        raise BadInput(
            "give exactly one of: -- CMD ARGS…, --service UNIT ACTION, --logs UNIT|PATH"
            if kinds
            else "nothing to run: give -- CMD ARGS…, --service UNIT ACTION or --logs UNIT|PATH"
        )
    body: dict[str, Any] = {"target": target, "kind": kinds[0], "timeout": timeout}
    if kinds[0] == "shell":
        shell: dict[str, Any] = {"script": words[0]} if len(words) == 1 else {"argv": words}
        if env:
            pairs = {}
            for item in env:
                name, sep, value = item.partition("=")
                if not sep or not name:
                    raise BadInput(f"-e {item!r}: expected NAME=VALUE")
                pairs[name] = value
            shell["env"] = pairs
        if cwd:
            shell["cwd"] = cwd
        if user:
            shell["user"] = user
        body["shell"] = shell
    elif kinds[0] == "service":
        assert service is not None
        unit, action = service
        body["service"] = (
            {"action": action} if unit in ("-", "") else {"action": action, "unit": unit}
        )
    else:
        assert logs is not None
        spec: dict[str, Any] = {"path": logs} if logs.startswith("/") else {"unit": logs}
        if lines is not None:
            spec["lines"] = lines
        if follow:
            spec["follow"] = True
        body["logs"] = spec
    if (env or cwd or user) and kinds[0] != "shell":
        raise BadInput("-e, --cwd and --user apply to shell commands only")
    if (lines is not None or follow) and kinds[0] != "logs":
        raise BadInput("--lines and --follow apply to --logs only")
    if expires is not None:
        body["expires_in"] = expires
    if batch is not None:
        body["batch"] = batch
    if note is not None:
        body["note"] = note
    return body


def labels_for(node_ids: list[str], hostnames: dict[str, str]) -> dict[str, str]:
    """Each node's label: its host name, with the id's start where host names repeat."""
    counts = Counter(hostnames.get(node_id, node_id) for node_id in node_ids)
    labels = {}
    for node_id in node_ids:
        name = hostnames.get(node_id, node_id)
        labels[node_id] = f"{name}/{node_id[:8]}" if counts[name] > 1 and name != node_id else name
    return labels


@dataclass
class Tracker:
    """What has been shown of one command; fed by events and REST re-syncs alike."""

    remote: Remote
    command_id: str
    labels: dict[str, str]
    out: Console
    errors: Console
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    offsets: dict[tuple[str, str], int] = field(default_factory=dict)
    partial: dict[tuple[str, str], bytes] = field(default_factory=dict)
    drained: set[str] = field(default_factory=set)
    command: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.executions)

    @property
    def finished(self) -> int:
        return sum(1 for x in self.executions.values() if x["state"] in TERMINAL)

    @property
    def done(self) -> bool:
        return bool(self.executions) and len(self.drained) == len(self.executions)

    def label(self, execution_id: str) -> str:
        node_id = str(self.executions.get(execution_id, {}).get("node_id", "?"))
        return self.labels.get(node_id, node_id)

    def _line(self, execution_id: str, stream: str, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        label = self.label(execution_id)
        if stream == "stderr":
            self.errors.print(Text(f"{label} ! {text}"), soft_wrap=True)
        else:
            self.out.print(Text(f"{label} | {text}"), soft_wrap=True)

    def show(self, execution_id: str, stream: str, offset: int, data: bytes) -> None:
        """Output bytes at ``offset``; what was shown already is skipped."""
        key = (execution_id, stream)
        shown = self.offsets.get(key, 0)
        if offset > shown or offset + len(data) <= shown:
            return
        data = data[shown - offset :]
        self.offsets[key] = shown + len(data)
        pending = self.partial.get(key, b"") + data
        *lines, rest = pending.split(b"\n")
        for line in lines:
            self._line(execution_id, stream, line)
        self.partial[key] = rest

    def flush(self, execution_id: str) -> None:
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((execution_id, stream), b"")
            if rest:
                self._line(execution_id, stream, rest)

    async def fetch(self, execution_id: str, stream: str) -> bool:
        """Show what REST holds beyond what was shown; True when the stream is complete."""
        while True:
            offset = self.offsets.get((execution_id, stream), 0)
            page = await self.remote.get(
                f"/api/v1/commands/{self.command_id}/executions/{execution_id}/output",
                stream=stream,
                offset=offset,
                limit=OUTPUT_PAGE,
            )
            data = base64.b64decode(page["data"])
            self.show(execution_id, stream, int(page["offset"]), data)
            if page["complete"]:
                return True
            if not data:
                return False

    async def drain(self, execution_id: str) -> None:
        """A finished execution: show the rest of its output, then its last partial lines."""
        for stream in ("stdout", "stderr"):
            for _ in range(DRAIN_TRIES):
                if await self.fetch(execution_id, stream):
                    break
                await asyncio.sleep(0.2)
        self.flush(execution_id)
        self.drained.add(execution_id)

    async def sync(self, *, poll_output: bool) -> None:
        """Re-read the command; drain what finished; with ``poll_output``, fetch running output."""
        self.command = await self.remote.get(f"/api/v1/commands/{self.command_id}")
        for execution in self.command["executions"]:
            self.executions[execution["id"]] = execution
        for execution_id, execution in self.executions.items():
            if execution_id in self.drained:
                continue
            if execution["state"] in TERMINAL:
                await self.drain(execution_id)
            elif poll_output and execution["state"] == "running":
                for stream in ("stdout", "stderr"):
                    await self.fetch(execution_id, stream)

    async def on_event(self, event: dict[str, Any]) -> None:
        execution_id = str(event.get("execution_id", ""))
        if execution_id not in self.executions:
            return
        if event.get("type") == "output":
            key = (execution_id, str(event["stream"]))
            offset = int(event["offset"])
            if offset > self.offsets.get(key, 0):  # something was missed: REST first
                await self.fetch(execution_id, key[1])
            self.show(execution_id, key[1], offset, base64.b64decode(event["data"]))
        elif event.get("type") == "execution":
            execution = self.executions[execution_id]
            execution["state"] = event["state"]
            for name in ("exit_code", "reason", "error"):
                if name in event:
                    execution[name] = event[name]
            if event["state"] in TERMINAL and execution_id not in self.drained:
                await self.drain(execution_id)


def _duration(execution: dict[str, Any]) -> str:
    started, ended = execution.get("started_at"), execution.get("ended_at")
    if started is None or ended is None:
        return "-"
    return f"{max(0.0, ended - started):.2f}s"


def summary_table(tracker: Tracker) -> Table:
    table = Table(title=f"command {tracker.command_id}", title_justify="left")
    for column in ("NODE", "STATE", "EXIT", "DURATION", "NOTE"):
        table.add_column(column, overflow="fold")
    styles = {"succeeded": "green", "running": "yellow", "sent": "yellow", "queued": "yellow"}
    rows = sorted(tracker.executions.values(), key=lambda x: tracker.label(x["id"]))
    for execution in rows:
        state = execution["state"]
        code = execution.get("exit_code")
        note = execution.get("reason") or execution.get("error") or ""
        if execution.get("signal"):
            note = f"signal {execution['signal']} {note}".strip()
        table.add_row(
            escape(tracker.label(execution["id"])),
            f"[{styles.get(state, 'red')}]{state}[/]",
            "-" if code is None else str(code),
            _duration(execution),
            escape(note),
        )
    return table


async def _events(socket: Any, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    from websockets.exceptions import WebSocketException

    # A lost socket or a message that is not JSON ends the feed: REST polling takes over.
    with contextlib.suppress(OSError, WebSocketException, orjson.JSONDecodeError):
        async for raw in socket:
            message = orjson.loads(raw)
            if message.get("type") == "progress":
                await queue.put(message["event"])
    await queue.put(None)


async def follow(
    remote: Remote, command: dict[str, Any], labels: dict[str, str], interrupted: asyncio.Event
) -> tuple[Tracker, bool]:
    """Follow ``command`` until every execution finished (or Ctrl-C); (tracker, cancelled)."""
    console = fleet_console(markup=False)
    tracker = Tracker(remote, command["id"], labels, console, err)
    for execution in command["executions"]:
        tracker.executions[execution["id"]] = execution
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    cancelled = False
    async with remote.events(f"command:{command['id']}") as socket:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        reader = asyncio.create_task(_events(socket, queue)) if socket is not None else None
        live = socket is not None
        with progress:
            task = progress.add_task("running", total=tracker.total)
            await tracker.sync(poll_output=not live)
            next_sync = time.monotonic() + (SYNC_EVERY if live else POLL_EVERY)
            deadline: float | None = None
            while not tracker.done:
                progress.update(task, completed=tracker.finished, total=tracker.total)
                if interrupted.is_set() and not cancelled:
                    cancelled = True
                    progress.update(task, description="cancelling")
                    with contextlib.suppress(RemoteError):
                        await remote.post(f"/api/v1/commands/{command['id']}/cancel")
                    deadline = time.monotonic() + CANCEL_WAIT
                if deadline is not None and time.monotonic() > deadline:
                    break
                wait = max(0.0, next_sync - time.monotonic())
                try:
                    event = await asyncio.wait_for(queue.get(), wait) if live else None
                    if not live:
                        await asyncio.sleep(wait)
                except TimeoutError:
                    event = None
                if event is not None:
                    await tracker.on_event(event)
                    continue
                if live and reader is not None and reader.done():
                    live = False  # the socket went away: poll from now on
                if time.monotonic() >= next_sync or not live:
                    await tracker.sync(poll_output=not live)
                    next_sync = time.monotonic() + (SYNC_EVERY if live else POLL_EVERY)
            progress.update(task, completed=tracker.finished)
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    # The final word (times, exit codes, what a cancel stopped) comes from REST.
    with contextlib.suppress(RemoteError):
        await tracker.sync(poll_output=False)
    return tracker, cancelled


def run(
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- CMD [ARGS]...", help="One word: a /bin/sh script; several: an argv"
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="all | group=NAME | a label selector (repeatable)"),
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="A group (repeatable)")
    ] = None,
    nodes: Annotated[
        str | None, typer.Option("--nodes", "-n", help="Node ids, comma-separated")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every node")] = False,
    service: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--service",
            metavar="UNIT ACTION",
            help="systemctl ACTION UNIT (list|status|start|stop|restart|enable|disable)",
        ),
    ] = None,
    logs: Annotated[
        str | None,
        typer.Option(
            "--logs", metavar="UNIT|PATH", help="The last lines of a journald unit or a /file"
        ),
    ] = None,
    lines: Annotated[
        int | None, typer.Option("--lines", min=0, help="Lines of --logs [default: 100]")
    ] = None,
    follow_logs: Annotated[
        bool, typer.Option("--follow", help="Keep streaming --logs until --timeout or Ctrl-C")
    ] = False,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="NAME=VALUE for the command (repeatable; shown as ***)"),
    ] = None,
    cwd: Annotated[str | None, typer.Option("--cwd", help="Working directory")] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Run as this user (the node must allow it)")
    ] = None,
    batch: Annotated[
        str | None, typer.Option("--batch", "-b", help="At most N (or P%) executions at once")
    ] = None,
    timeout: Annotated[
        int, typer.Option("--timeout", min=1, help="Seconds each execution may run")
    ] = 60,
    expires: Annotated[
        int | None,
        typer.Option(
            "--expires", min=1, help="Seconds an offline node may still receive it [default: 3600]"
        ),
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="Free text kept with the command")
    ] = None,
    server: ServerOption = None,
    key: KeyOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run a shell command, a service action or a log fetch on nodes; show each node's output."""
    try:
        body = build_body(
            target=build_target(target or [], group or [], nodes, every),
            words=words or [],
            service=service,
            logs=logs,
            lines=lines,
            follow=follow_logs,
            env=env or [],
            cwd=cwd,
            user=user,
            timeout=timeout,
            expires=expires,
            batch=batch,
            note=note,
        )
    except BadInput as exc:
        raise fail(str(exc), 2) from None
    try:
        code = asyncio.run(_run(body, endpoint(server, key, data_dir)))
    except RemoteError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


async def _run(body: dict[str, Any], where: Any) -> int:
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    remote = await Remote.connect(where)
    try:
        command = await remote.post("/api/v1/commands", body)
        node_ids = sorted({x["node_id"] for x in command["executions"]})
        try:
            hostnames = {n["id"]: n["hostname"] for n in await all_nodes(remote)}
        except RemoteError:
            hostnames = {}
        tracker, cancelled = await follow(
            remote, command, labels_for(node_ids, hostnames), interrupted
        )
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await remote.aclose()
    out = fleet_console()
    out.print(summary_table(tracker))
    states = Counter(x["state"] for x in tracker.executions.values())
    out.print(
        ", ".join(f"{count} {state}" for state, count in sorted(states.items())), markup=False
    )
    if cancelled:
        stopped = [
            tracker.label(x["id"]) for x in tracker.executions.values() if x["state"] == "cancelled"
        ]
        err.print(
            f"Cancelled command {tracker.command_id}: {len(stopped)} execution(s) cancelled"
            + (f" ({', '.join(stopped)})" if stopped else ""),
            markup=False,
        )
        return EXIT_INTERRUPTED
    return 0 if states and set(states) == {"succeeded"} else 1

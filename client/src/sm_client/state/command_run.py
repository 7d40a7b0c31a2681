"""The live view of one command: each node's execution, its state, exit code and output.

How it stays current (``openapi/events-protocol.json``, ``progress``):

1. subscribe to ``command:<id>`` on the feed first, so nothing published
   from now on is missed;
2. read the command and each execution's output over REST
   (``CommandsApi.get`` / ``output`` from the bytes already held on);
3. apply ``progress`` events on top: an ``execution`` event moves a state
   forward (never back: a REST answer older than an event does not undo it),
   an ``output`` chunk is appended at its ``offset`` — the part already held
   is a duplicate and dropped, a gap (bytes missed) is read over REST.

After each reconnect the feed runs :meth:`CommandRunState.sync` again (step
2); while the feed is down, or as a safety net while it is up, a running
command is re-read periodically. Cancel the command or one execution, or
run it again as a new command (all nodes, or only those that did not succeed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, cast

from sm_client.api import ApiError, CoreApi
from sm_client.api.commands import (
    ENDED,
    STATES,
    Command,
    CommandsApi,
    Execution,
    ExecutionState,
    Stream,
    decoded,
)
from sm_client.api.fleet import FleetApi
from sm_client.state.feed import Feed, Message, Stop
from sm_client.state.observable import Load, Observable, Problem

POLL_DISCONNECTED: Final = 1.0  # seconds between re-reads while the feed is down
POLL_CONNECTED: Final = 4.0  # the safety net while it is up
SHOW_CHARS: Final = 65536  # the most characters of one stream a view shows (the tail)
FETCH_CONCURRENCY: Final = 8
NAME_LOOKUPS: Final = 20  # up to this many executions: names by node, else one page

# How far along a state is; a state never moves to a lower rank.
_RANK: Final[dict[str, int]] = {"queued": 0, "sent": 1, "running": 2} | {s: 3 for s in ENDED}


@dataclass
class ExecutionView:
    """One node's execution as the live view shows it."""

    id: str
    node_id: str
    name: str
    state: ExecutionState
    exit_code: int | None = None
    reason: str = ""
    error: str = ""
    signal: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    truncated: bool = False
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)

    def buffer(self, stream: Stream) -> bytearray:
        return self.stdout if stream == "stdout" else self.stderr

    def text(self, stream: Stream = "stdout", limit: int = SHOW_CHARS) -> str:
        """The stream decoded (UTF-8, bad bytes replaced); its last ``limit`` characters."""
        text = bytes(self.buffer(stream)).decode("utf-8", "replace")
        return text[-limit:] if len(text) > limit else text

    def clipped(self, stream: Stream = "stdout", limit: int = SHOW_CHARS) -> bool:
        return len(self.buffer(stream)) > limit

    def merge(self, stream: Stream, offset: int, data: bytes) -> bool | None:
        """Put ``data`` at ``offset``: True when bytes were added, False for a
        duplicate, None for a gap (bytes before ``offset`` are missing)."""
        buffer = self.buffer(stream)
        held = len(buffer)
        if offset > held:
            return None
        end = offset + len(data)
        if end <= held:
            return False
        buffer.extend(data[held - offset :])
        return True

    def apply(self, execution: Execution) -> None:
        """Take what a REST answer says (a state only forwards)."""
        self.advance(execution["state"])
        if execution["state"] == self.state:
            self.exit_code = execution["exit_code"]
            self.reason = execution.get("reason", "") or execution.get("code", "")
            self.error = execution.get("error", "")
            self.signal = execution.get("signal")
        self.started_at = execution.get("started_at", self.started_at)
        self.ended_at = execution.get("ended_at", self.ended_at)
        out, err = execution.get("stdout"), execution.get("stderr")
        self.truncated = bool((out and out["truncated"]) or (err and err["truncated"]))

    def advance(self, state: str) -> bool:
        if state in _RANK and _RANK[state] >= _RANK.get(self.state, 0) and state != self.state:
            if self.ended:  # an ended execution stays as it ended
                return False
            self.state = cast(ExecutionState, state)
            return True
        return False


class CommandRunState(Observable):
    """One command, live. ``start()`` when shown, ``stop()`` when left."""

    def __init__(self, api: CoreApi, feed: Feed, command_id: str) -> None:
        super().__init__()
        self.api = api
        self.feed = feed
        self.command_id = command_id
        self.commands = CommandsApi(api)
        self.fleet = FleetApi(api)
        self.load = Load()
        self.command: Command | None = None
        self.executions: list[ExecutionView] = []
        self._by_id: dict[str, ExecutionView] = {}
        self.names: dict[str, str] = {}
        self.problem: Problem | None = None  # the last action's failure
        self.busy = False  # an action (cancel, re-run) is in flight
        self._stops: list[Stop] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[Any]] = set()
        self._fetching: set[tuple[str, str]] = set()
        self._sync_lock = asyncio.Lock()
        self._gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    @property
    def may_run(self) -> bool:
        return self.api.may("commands:run")

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, then read everything over REST; keep it current until :meth:`stop`."""
        self._stops.append(self.feed.subscribe(f"command:{self.command_id}", self.on_message))
        self._stops.append(self.feed.on_resync(self.sync))
        self.load.loading()
        self.changed()
        await self.sync()
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll())

    def stop(self) -> None:
        """Unsubscribe and cancel background reads (they end on the running loop)."""
        for stop in self._stops:
            stop()
        self._stops.clear()
        if self._poller is not None:
            self._poller.cancel()
            self._ending.add(self._poller)
            self._poller = None
        for task in list(self._tasks):
            task.cancel()
            self._ending.add(task)
        self._tasks.clear()

    async def aclose(self) -> None:
        """:meth:`stop`, then wait until the cancelled reads have ended (their
        connections closed) — before an event loop that is about to close."""
        self.stop()
        ending, self._ending = list(self._ending), set()
        await asyncio.gather(*ending, return_exceptions=True)

    async def _poll(self) -> None:
        while True:
            connected = self.feed.connected
            await asyncio.sleep(POLL_CONNECTED if connected else POLL_DISCONNECTED)
            if self.command is None or self.running:
                with contextlib.suppress(ApiError):
                    await self.sync()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- reading --------------------------------------------------------------------

    async def sync(self) -> None:
        """Read the command and the output not held yet (after start and each reconnect)."""
        async with self._sync_lock:
            try:
                command = await self.commands.get(self.command_id)
            except ApiError as exc:
                if self.command is None:
                    self.load.failed(exc)
                else:
                    self.problem = Problem.of(exc)
                self.changed()
                return
            self._take(command)
            await self._name_nodes()
            self.load.ready(empty=not self.executions)
            self.changed()
            await asyncio.gather(
                *(
                    self._fetch(view, stream)
                    for view in self.executions
                    for stream in cast(tuple[Stream, ...], ("stdout", "stderr"))
                    if self._may_have_output(view, stream)
                )
            )

    def _may_have_output(self, view: ExecutionView, stream: Stream) -> bool:
        if view.state in ("queued", "sent", "expired"):
            return False
        if not view.ended:
            return True
        executions = self.command["executions"] if self.command is not None else []
        execution = next((e for e in executions if e["id"] == view.id), None)
        summary = execution.get(stream) if execution is not None else None
        if summary is None or summary["truncated"]:
            return view.state != "refused"
        return len(view.buffer(stream)) < summary["bytes"]

    def _take(self, command: Command) -> None:
        self.command = command
        for execution in command["executions"]:
            view = self._by_id.get(execution["id"])
            if view is None:
                view = ExecutionView(
                    execution["id"],
                    execution["node_id"],
                    self.names.get(execution["node_id"], _short(execution["node_id"])),
                    execution["state"],
                )
                self._by_id[view.id] = view
                self.executions.append(view)
            view.apply(execution)

    async def _name_nodes(self) -> None:
        missing = [v.node_id for v in self.executions if v.node_id not in self.names]
        if not missing:
            return
        try:
            if len(missing) <= NAME_LOOKUPS:
                nodes = await asyncio.gather(
                    *(self.fleet.get_node(n) for n in missing), return_exceptions=True
                )
                for node in nodes:
                    if isinstance(node, dict):
                        self.names[node["id"]] = node["name"]
            else:
                page = await self.fleet.list_nodes(limit=1000)
                self.names.update({n["id"]: n["name"] for n in page["items"]})
        except ApiError:
            pass
        for node_id in missing:
            self.names.setdefault(node_id, _short(node_id))
        for view in self.executions:
            view.name = self.names.get(view.node_id, view.name)
        self.executions.sort(key=lambda v: (v.name.lower(), v.node_id))

    async def _fetch(self, view: ExecutionView, stream: Stream) -> None:
        """Read ``stream`` over REST from the bytes held on, to what is recorded now."""
        key = (view.id, stream)
        if key in self._fetching:
            return
        self._fetching.add(key)
        try:
            async with self._gate:
                while True:
                    held = len(view.buffer(stream))
                    page = await self.commands.output(
                        self.command_id, view.id, stream=stream, offset=held
                    )
                    data = decoded(page)
                    if data and view.merge(stream, page["offset"], data):
                        self.changed()
                    if page["complete"] or not data or page["next_offset"] <= held:
                        return
        except ApiError as exc:
            self.problem = Problem.of(exc)
            self.changed()
        finally:
            self._fetching.discard(key)

    # --- live -----------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """A ``progress`` message of ``command:<id>`` (other types are ignored)."""
        if message.get("type") != "progress":
            return
        event = message.get("event") or {}
        view = self._by_id.get(str(event.get("execution_id", "")))
        if view is None:
            if event.get("type") in ("execution", "output"):
                self._spawn(self.sync())  # an execution not read yet
            return
        if event["type"] == "execution":
            state = str(event.get("state", ""))
            if view.advance(state) or view.state == state:
                if "exit_code" in event:
                    view.exit_code = event["exit_code"]
                view.reason = str(event.get("reason", view.reason) or "")
                view.error = str(event.get("error", view.error) or "")
                at = event.get("at")
                if isinstance(at, int | float):
                    if state == "running" and view.started_at is None:
                        view.started_at = float(at)
                    if view.ended and view.ended_at is None:
                        view.ended_at = float(at)
            if view.ended:
                # The last chunks may still be on their way: read the rest.
                self._spawn(self._fetch(view, "stdout"))
                self._spawn(self._fetch(view, "stderr"))
                if not self.running:
                    self._spawn(self.sync())
            self.changed()
        elif event["type"] == "output":
            stream = cast(Stream, event.get("stream", "stdout"))
            try:
                data = base64.b64decode(str(event.get("data", "")))
            except (binascii.Error, ValueError):
                return
            added = view.merge(stream, int(event.get("offset", 0)), data)
            if added is None:
                self._spawn(self._fetch(view, stream))
            elif added:
                self.changed()

    # --- what views show ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return any(not v.ended for v in self.executions)

    def counts(self) -> dict[str, int]:
        """Executions per state (every state, zero included), as shown now."""
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for view in self.executions:
            counts[view.state] += 1
        return counts

    def execution(self, execution_id: str) -> ExecutionView | None:
        return self._by_id.get(execution_id)

    def by_node(self, node_id: str) -> ExecutionView | None:
        return next((v for v in self.executions if v.node_id == node_id), None)

    # --- actions --------------------------------------------------------------------

    async def cancel(self) -> bool:
        """Cancel every execution that has not ended."""
        return await self._act(self.commands.cancel(self.command_id))

    async def cancel_execution(self, execution_id: str) -> bool:
        return await self._act(self.commands.cancel_execution(self.command_id, execution_id))

    async def _act(self, call: Coroutine[Any, Any, object]) -> bool:
        self.busy, self.problem = True, None
        self.changed()
        try:
            answer = await call
        except ApiError as exc:
            self.problem = Problem.of(exc)
            return False
        else:
            if isinstance(answer, dict) and "executions" in answer:
                self._take(cast(Command, answer))
            elif isinstance(answer, dict) and "state" in answer:
                view = self._by_id.get(str(answer["id"]))
                if view is not None:
                    view.apply(cast(Execution, answer))
            return True
        finally:
            self.busy = False
            self.changed()

    async def rerun(self, *, failed_only: bool = False) -> str | None:
        """Run the command again; the new command's id (None on failure, see :attr:`problem`)."""
        self.busy, self.problem = True, None
        self.changed()
        try:
            again = await self.commands.rerun(self.command_id, failed_only=failed_only)
        except ApiError as exc:
            self.problem = Problem.of(exc)
            return None
        finally:
            self.busy = False
            self.changed()
        return again["id"]


def _short(node_id: str) -> str:
    return node_id[:8]

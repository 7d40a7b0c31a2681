"""The node detail screen's view-model: one node, its live values, history and controls.

What it holds:

- the node (facts, labels, group, status) from the registry, kept current by
  the ``fleet`` topic's status events;
- :class:`Gauges`: the newest sample, first from ``MetricsApi.latest`` and then
  from each heartbeat on ``node:<id>``;
- :class:`Chart` per trend (CPU, load, memory, disk, network) over the chosen
  span (1 h, 24 h, 7 d, 30 d) from ``MetricsApi.series``, re-read periodically;
- the node's services: a ``service`` command with action ``list`` run on the
  node, its ``systemctl list-units`` output parsed into :class:`ServiceRow`;
  start/stop/restart/… as ``service`` commands, each awaited to its end;
- logs: a ``logs`` command (a journald unit or a file path, the last N lines);
  following one is a ``logs`` command with ``follow`` whose output streams on
  ``command:<id>`` until it is stopped (cancelled) or the screen is left;
- the node's recent commands (``CommandsApi.list_commands(node_id=...)``).

A node that does not allow service control or logs refuses the execution:
its reason is kept as a :class:`Problem` the view shows as it is.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from sm_client.api import ApiError, CoreApi
from sm_client.api.commands import (
    ENDED,
    CommandCreate,
    CommandsApi,
    CommandSummary,
    Execution,
    LogsSpec,
    ServiceAction,
)
from sm_client.api.fleet import FleetApi, Group, Node, NodePatch
from sm_client.api.metrics import Latest, MetricsApi, Series
from sm_client.state.feed import Feed, Message, Stop
from sm_client.state.observable import Load, Observable, Phase, Problem

Span = Literal["1h", "24h", "7d", "30d"]
SPANS: Final[dict[str, int]] = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# Each chart and the metrics (openapi/metrics.yaml MetricName) it draws, one line each.
CHARTS: Final[dict[str, tuple[str, ...]]] = {
    "cpu": ("cpu",),
    "load": ("load1", "load5", "load15"),
    "memory": ("mem_percent",),
    "disk": ("disk_percent",),
    "network": ("net_rx_bps", "net_tx_bps"),
}
MAX_POINTS: Final = 180
# How often the shown span's charts are read again (seconds), by span.
CHART_REFRESH: Final[dict[str, float]] = {"1h": 15.0, "24h": 60.0, "7d": 300.0, "30d": 900.0}
RECENT_COMMANDS: Final = 20
# Service actions the screen offers per unit (``list`` and ``status`` are read-only).
UNIT_ACTIONS: Final[tuple[ServiceAction, ...]] = ("start", "stop", "restart")
# How long a service action or a log read may run on the node (seconds), and how
# long the screen waits for it (offline nodes: until the command expires).
ACTION_TIMEOUT: Final = 60
ACTION_EXPIRES: Final = 120
FOLLOW_TIMEOUT: Final = 3600
# The most log text kept on screen (characters); older lines are dropped first.
LOG_KEEP: Final = 200_000
LOG_LINES_DEFAULT: Final = 200
POLL: Final = 1.0

# Load states ``systemctl list-units`` prints in its second column.
_LOAD_STATES: Final = frozenset(
    {"loaded", "not-found", "bad-setting", "error", "masked", "merged", "stub"}
)
_BULLETS: Final = ("●", "*", "\u00d7", "○")


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Gauges:
    """The newest sample of the node (values None where the node does not report them)."""

    at: float
    cpu: float | None
    cores: int
    memory_percent: float | None
    memory_used: float | None
    memory_total: float | None
    disk_percent: float | None
    disk_used: float | None
    disk_total: float | None
    load: tuple[float, float, float] | None
    rx_bps: float | None
    tx_bps: float | None
    uptime: float | None
    processes: float | None
    # Per mount: (mount point, file system, used bytes, total bytes).
    disks: tuple[tuple[str, str, int, int], ...] = ()

    @classmethod
    def from_latest(cls, latest: Latest) -> Gauges:
        values, detail = latest["values"], latest["detail"]
        loads = (values["load1"], values["load5"], values["load15"])
        return cls(
            at=latest["ts"],
            cpu=values["cpu"],
            cores=len(detail["cores"]),
            memory_percent=values["mem_percent"],
            memory_used=values["mem_used"],
            memory_total=values["mem_total"],
            disk_percent=values["disk_percent"],
            disk_used=values["disk_used"],
            disk_total=values["disk_total"],
            load=None if None in loads else cast(tuple[float, float, float], loads),
            rx_bps=values["net_rx_bps"],
            tx_bps=values["net_tx_bps"],
            uptime=detail["uptime"],
            processes=values["processes"],
            disks=tuple((d["mount"], d["fstype"], d["used"], d["total"]) for d in detail["disks"]),
        )

    @classmethod
    def from_heartbeat(cls, heartbeat: dict[str, Any]) -> Gauges:
        """From the agent protocol's ``heartbeat`` (its ``sample``), as the metrics service counts."""
        sample: dict[str, Any] = heartbeat["sample"]
        memory = sample.get("memory") or {}
        disks = sample.get("disks") or []
        net = sample.get("net") or {}
        load = sample.get("load")
        mem_total, mem_used = memory.get("total"), memory.get("used")
        disk_total = sum(int(d.get("total", 0)) for d in disks)
        disk_used = sum(int(d.get("used", 0)) for d in disks)
        cpu = sample.get("cpu") or {}
        return cls(
            at=float(heartbeat.get("sent_at", time.time())),
            cpu=_num(cpu.get("percent")),
            cores=len(cpu.get("per_core") or []),
            memory_percent=_percent(mem_used, mem_total),
            memory_used=_num(mem_used),
            memory_total=_num(mem_total),
            disk_percent=_percent(disk_used, disk_total) if disks else None,
            disk_used=float(disk_used) if disks else None,
            disk_total=float(disk_total) if disks else None,
            load=(float(load[0]), float(load[1]), float(load[2]))
            if isinstance(load, list) and len(load) == 3
            else None,
            rx_bps=_num(net.get("rx_bps")),
            tx_bps=_num(net.get("tx_bps")),
            uptime=_num(sample.get("uptime")),
            processes=_num(sample.get("processes")),
            disks=tuple(
                (str(d["mount"]), str(d.get("fstype", "")), int(d["used"]), int(d["total"]))
                for d in disks
            ),
        )


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _percent(used: object, total: object) -> float | None:
    u, t = _num(used), _num(total)
    if u is None or t is None or t <= 0:
        return None
    return round(u * 100.0 / t, 3)


@dataclass(frozen=True)
class Line:
    """One metric of a chart: (bucket start, average) for each bucket with data."""

    metric: str
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Chart:
    """One trend chart over ``[start, end)``: ``points`` buckets hold data."""

    name: str
    lines: list[Line]
    start: float
    end: float
    step: int
    points: int

    @property
    def peak(self) -> float:
        return max((y for line in self.lines for _, y in line.points), default=0.0)

    @property
    def latest(self) -> dict[str, float]:
        """Each line's newest value."""
        return {line.metric: line.points[-1][1] for line in self.lines if line.points}


def charts_of(series: Series) -> dict[str, Chart]:
    """The trend charts of one ``series`` answer (every metric of :data:`CHARTS`)."""
    stamps, counts = series["timestamps"], series["count"]
    with_data = sum(1 for n in counts if n)
    charts: dict[str, Chart] = {}
    for name, metrics in CHARTS.items():
        lines = []
        for metric in metrics:
            aggregates = series["series"].get(metric)
            averages = aggregates["avg"] if aggregates is not None else []
            points = [
                (float(t), float(v))
                for t, v, n in zip(stamps, averages, counts, strict=False)
                if n and v is not None
            ]
            lines.append(Line(metric, points))
        charts[name] = Chart(
            name=name,
            lines=lines,
            start=float(series["from"]),
            end=float(series["to"]),
            step=series["step"],
            points=with_data,
        )
    return charts


@dataclass(frozen=True)
class ServiceRow:
    """One unit as ``systemctl list-units`` shows it."""

    unit: str
    load: str
    active: str
    sub: str
    description: str


def parse_units(text: str) -> list[ServiceRow]:
    """The units of ``systemctl list-units [--plain] [--no-legend]`` output.

    Header, legend and summary lines are skipped: a row is a unit name (with a
    type suffix) followed by a known load state, an active and a sub state.
    """
    rows: list[ServiceRow] = []
    for raw in text.splitlines():
        line = raw.strip()
        while line.startswith(_BULLETS):
            line = line[1:].strip()
        parts = line.split(None, 4)
        if len(parts) < 4 or parts[1] not in _LOAD_STATES:
            continue
        unit = parts[0]
        if "." not in unit.strip(".") or unit.upper() == "UNIT":
            continue
        rows.append(
            ServiceRow(unit, parts[1], parts[2], parts[3], parts[4] if len(parts) > 4 else "")
        )
    return rows


def problem_of(execution: Execution, stderr: str = "") -> Problem:
    """A refused, failed, timed-out or expired execution as a screen shows it.

    The title is the state (``refused: disabled``); the detail the agent's
    reason, the start error, or the tail of stderr.
    """
    state = execution["state"]
    title = state if "code" not in execution else f"{state}: {execution['code']}"
    detail = execution.get("reason") or execution.get("error") or stderr.strip()[-500:]
    if not detail and execution.get("exit_code") is not None:
        detail = f"exit code {execution['exit_code']}"
    return Problem(title, detail)


@dataclass
class ServiceJob:
    """A service action in flight or its result."""

    action: str
    unit: str
    running: bool = True
    problem: Problem | None = None
    output: str = ""


@dataclass
class LogState:
    source: str = ""
    lines: int = LOG_LINES_DEFAULT
    text: str = ""
    load: Load = field(default_factory=lambda: Load(Phase.EMPTY))
    following: bool = False
    command_id: str | None = None
    execution_id: str | None = None
    # Bytes of stdout received (the offset the next chunk should start at).
    received: int = 0


# ---------------------------------------------------------------------------- model


class NodeDetail(Observable):
    """Everything the node detail screen shows of ``node_id``, and what it can do."""

    def __init__(self, api: CoreApi, feed: Feed, node_id: str, *, poll: float = POLL) -> None:
        super().__init__()
        self.api = api
        self.feed = feed
        self.node_id = node_id
        self.fleet = FleetApi(api)
        self.metrics = MetricsApi(api)
        self.commands = CommandsApi(api)
        self.poll = poll

        self.node: Node | None = None
        self.load = Load()
        self.groups: list[str] = []
        self.save_problem: Problem | None = None

        self.gauges: Gauges | None = None

        self.span: str = "1h"
        self.charts: dict[str, Chart] = {}
        self.charts_load = Load()

        self.services: list[ServiceRow] = []
        self.services_load = Load()
        self.services_listed = False
        self.jobs: dict[str, ServiceJob] = {}  # by unit

        self.logs = LogState()

        self.executions: list[CommandSummary] = []
        self.executions_load = Load()

        self._stops: list[Stop] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._follow_stop: Stop | None = None
        self._active = False
        self._left = False
        self._list_on_load = False

    # --- scopes --------------------------------------------------------------------

    @property
    def can_write(self) -> bool:
        return self.api.may("nodes:write")

    @property
    def can_run(self) -> bool:
        return self.api.may("commands:run")

    @property
    def can_read_commands(self) -> bool:
        return self.api.may("commands:read")

    @property
    def can_read_metrics(self) -> bool:
        return self.api.may("metrics:read")

    @property
    def online(self) -> bool:
        return self.node is not None and self.node["status"] == "online"

    # --- lifetime ------------------------------------------------------------------

    async def enter(self, *, list_services: bool = False) -> None:
        """Subscribe to the node's topics, then read everything over REST.

        ``list_services``: also list the node's services (when it is online and
        the token may run commands), beside the other reads rather than after
        them: slow charts must not hold the services back.
        """
        self._active, self._left = True, False
        self._list_on_load = list_services
        self._stops.append(self.feed.subscribe("fleet", self._on_fleet))
        if self.can_read_metrics:
            self._stops.append(self.feed.subscribe(f"node:{self.node_id}", self._on_metrics))
        self._stops.append(self.feed.on_resync(self.resync))
        await self.reload()
        if self.node is not None and self.can_read_metrics:
            self._refresher = asyncio.create_task(self._refresh_charts())

    def leave(self) -> None:
        """Unsubscribe, stop the chart refresh, and cancel a log follow still running."""
        self._active = False
        self._left = True
        for stop in self._stops:
            stop()
        self._stops.clear()
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None
        if self.logs.following:
            self._spawn(self.stop_follow())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resync(self) -> None:
        """After a reconnect: read again what events would have changed."""
        await self.reload()
        if self.logs.following:
            await self._catch_up_follow()

    async def reload(self) -> None:
        """The node, its latest sample, its charts and its recent commands."""
        if self.node is None:
            self.load.loading()
            self.changed()
        try:
            self.node = await self.fleet.get_node(self.node_id)
        except ApiError as error:
            self.load.failed(error)
            self.changed()
            return
        self.load.ready()
        self.changed()
        if self._list_on_load and self.can_run and self.online:
            self._list_on_load = False  # once per visit, not again on each re-sync
            self._spawn(self.list_services())
        await asyncio.gather(self._read_latest(), self.read_charts(), self.read_executions())

    async def _read_latest(self) -> None:
        if not self.can_read_metrics:
            return
        try:
            page = await self.metrics.latest([self.node_id])
        except ApiError:
            return  # the gauges stay empty until a heartbeat arrives
        if page["items"]:
            latest = Gauges.from_latest(page["items"][0])
            if self.gauges is None or latest.at >= self.gauges.at:
                self.gauges = latest
                self.changed()

    # --- live events ---------------------------------------------------------------

    def _on_fleet(self, message: Message) -> None:
        event = message.get("event") or {}
        if event.get("type") != "status" or event.get("node_id") != self.node_id:
            return
        if self.node is not None and event.get("status") in ("online", "offline"):
            self.node = cast(Node, {**self.node, "status": event["status"]})
            self.changed()

    def _on_metrics(self, message: Message) -> None:
        heartbeat = message.get("heartbeat")
        if message.get("type") != "metrics" or not isinstance(heartbeat, dict):
            return
        try:
            gauges = Gauges.from_heartbeat(heartbeat)
        except (KeyError, TypeError, ValueError, IndexError):
            return
        if self.gauges is None or gauges.at >= self.gauges.at:
            self.gauges = gauges
            if self.node is not None and self.node["status"] != "online":
                self.node = cast(Node, {**self.node, "status": "online"})
            self.changed()

    # --- charts --------------------------------------------------------------------

    async def set_span(self, span: str) -> None:
        if span not in SPANS:
            raise ValueError(f"unknown span {span!r}")
        if span != self.span:
            self.span = span
            self.charts = {}
            self.charts_load.loading()
            self.changed()
        await self.read_charts()

    async def read_charts(self) -> None:
        if not self.can_read_metrics:
            return
        span = self.span
        end = time.time()
        metrics = [metric for names in CHARTS.values() for metric in names]
        try:
            series = await self.metrics.series(
                self.node_id, metrics=metrics, start=end - SPANS[span], end=end,
                max_points=MAX_POINTS,
            )  # fmt: skip
        except ApiError as error:
            if span != self.span:
                return
            if error.status == 404:  # nothing stored of the node yet
                self.charts = {}
                self.charts_load.ready(empty=True)
            else:
                self.charts_load.failed(error)
            self.changed()
            return
        if span != self.span:
            return  # another span was chosen meanwhile
        self.charts = charts_of(series)
        self.charts_load.ready(empty=not any(c.points for c in self.charts.values()))
        self.changed()

    async def _refresh_charts(self) -> None:
        while self._active:
            await asyncio.sleep(CHART_REFRESH.get(self.span, 60.0))
            if self._active:
                await self.read_charts()

    # --- node: labels and group ----------------------------------------------------

    async def read_groups(self) -> None:
        try:
            groups: list[Group] = await self.fleet.list_groups()
        except ApiError:
            return
        self.groups = sorted(g["name"] for g in groups)
        self.changed()

    async def save(self, *, labels: dict[str, str], group: str | None) -> bool:
        """Replace the node's labels and set its group; False (and ``save_problem``) if refused."""
        patch: NodePatch = {"labels": labels, "group": group or None}
        try:
            self.node = await self.fleet.update_node(self.node_id, patch)
        except ApiError as error:
            self.save_problem = Problem.of(error)
            self.changed()
            return False
        self.save_problem = None
        self.changed()
        return True

    # --- executions on the node ----------------------------------------------------

    async def read_executions(self) -> None:
        if not self.can_read_commands:
            return
        if not self.executions:
            self.executions_load.loading()
        try:
            page = await self.commands.list_commands(node_id=self.node_id, limit=RECENT_COMMANDS)
        except ApiError as error:
            self.executions_load.failed(error)
            self.changed()
            return
        self.executions = page["items"]
        self.executions_load.ready(empty=not self.executions)
        self.changed()

    async def _run(self, body: CommandCreate, within: float) -> tuple[Execution, str, str]:
        """Create ``body`` on this node, wait until its execution ends; it and its output.

        Waits on the command's topic, reading the command again on each event
        (and every ``poll`` seconds in case an event was missed).
        """
        command = await self.commands.create(body)
        command_id = command["id"]
        woken = asyncio.Event()
        stop = self.feed.subscribe(f"command:{command_id}", lambda _: woken.set())
        deadline = time.monotonic() + within
        try:
            execution = command["executions"][0]
            while execution["state"] not in ENDED:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), self.poll)
                woken.clear()
                detail = await self.commands.get(command_id)
                execution = next(
                    (x for x in detail["executions"] if x["node_id"] == self.node_id),
                    detail["executions"][0],
                )
                if execution["state"] not in ENDED and time.monotonic() > deadline:
                    raise ApiError(0, "timed out", f"no result from the node in {within:g} s")
                if execution["state"] not in ENDED and self._left:
                    raise ApiError(0, "left", "the screen was left before the node answered")
        finally:
            stop()
        out = err = ""
        if execution["state"] not in ("refused", "expired", "cancelled") or execution.get("stdout"):
            out = (await self.commands.output_bytes(command_id, execution["id"])).decode(
                "utf-8", "replace"
            )
            err = (await self.commands.output_bytes(command_id, execution["id"], "stderr")).decode(
                "utf-8", "replace"
            )
        return execution, out, err

    # --- services ------------------------------------------------------------------

    async def list_services(self) -> None:
        """Run ``service list`` on the node and parse what it prints."""
        self.services_load.loading()
        self.changed()
        body: CommandCreate = {
            "target": {"node_ids": [self.node_id]},
            "kind": "service",
            "service": {"action": "list"},
            "timeout": ACTION_TIMEOUT,
            "expires_in": ACTION_EXPIRES,
        }
        try:
            execution, out, err = await self._run(body, ACTION_EXPIRES + ACTION_TIMEOUT)
        except ApiError as error:
            self.services_load.failed(error)
            self.changed()
            return
        self.services_listed = True
        if execution["state"] != "succeeded":
            _fail(self.services_load, problem_of(execution, err))
        else:
            self.services = parse_units(out)
            self.services_load.ready(empty=not self.services)
        self.changed()
        self._spawn(self.read_executions())

    async def service_action(self, action: ServiceAction, unit: str) -> bool:
        """Run ``systemctl <action> <unit>`` on the node; True when it succeeded.

        The result stays in ``jobs[unit]`` (with the node's refusal reason when
        it refused); the list is read again after a change that succeeded.
        """
        unit = unit.strip()
        if not unit:
            return False
        job = ServiceJob(action, unit)
        self.jobs[unit] = job
        self.changed()
        body: CommandCreate = {
            "target": {"node_ids": [self.node_id]},
            "kind": "service",
            "service": {"action": action, "unit": unit},
            "timeout": ACTION_TIMEOUT,
            "expires_in": ACTION_EXPIRES,
        }
        try:
            execution, out, err = await self._run(body, ACTION_EXPIRES + ACTION_TIMEOUT)
        except ApiError as error:
            job.running, job.problem = False, Problem.of(error)
            self.changed()
            return False
        job.running = False
        job.output = (out + err).strip()
        if execution["state"] != "succeeded":
            job.problem = problem_of(execution, err)
        self.changed()
        self._spawn(self.read_executions())
        if job.problem is None and action != "status" and self.services_listed:
            self._spawn(self.list_services())
        return job.problem is None

    def dismiss(self, unit: str) -> None:
        if self.jobs.pop(unit, None) is not None:
            self.changed()

    # --- logs ----------------------------------------------------------------------

    @staticmethod
    def logs_spec(source: str, lines: int, follow: bool = False) -> LogsSpec:
        """A journald unit, or a file when ``source`` is an absolute path."""
        source = source.strip()
        spec: LogsSpec = {"lines": max(0, min(int(lines), 100_000))}
        if source.startswith("/"):
            spec["path"] = source
        else:
            spec["unit"] = source
        if follow:
            spec["follow"] = True
        return spec

    async def read_logs(self, source: str, lines: int) -> None:
        """The last ``lines`` lines of ``source`` (stops a follow first)."""
        if self.logs.following:
            await self.stop_follow()
        source = source.strip()
        self.logs = LogState(source=source, lines=lines)
        if not source:
            return
        self.logs.load.loading()
        self.changed()
        body: CommandCreate = {
            "target": {"node_ids": [self.node_id]},
            "kind": "logs",
            "logs": self.logs_spec(source, lines),
            "timeout": ACTION_TIMEOUT,
            "expires_in": ACTION_EXPIRES,
        }
        try:
            execution, out, err = await self._run(body, ACTION_EXPIRES + ACTION_TIMEOUT)
        except ApiError as error:
            self.logs.load.failed(error)
            self.changed()
            return
        self.logs.command_id = execution["command_id"]
        self.logs.execution_id = execution["id"]
        self.logs.text = _keep(out)
        if execution["state"] != "succeeded":
            _fail(self.logs.load, problem_of(execution, err))
        else:
            self.logs.load.ready(empty=not out)
        self.changed()
        self._spawn(self.read_executions())

    async def follow(self, source: str, lines: int) -> None:
        """Stream ``source`` live: its last ``lines`` lines, then each new one."""
        if self.logs.following:
            await self.stop_follow()
        source = source.strip()
        if not source:
            return
        self.logs = LogState(source=source, lines=lines, following=True)
        self.logs.load.loading()
        self.changed()
        body: CommandCreate = {
            "target": {"node_ids": [self.node_id]},
            "kind": "logs",
            "logs": self.logs_spec(source, lines, follow=True),
            "timeout": FOLLOW_TIMEOUT,
            "expires_in": ACTION_EXPIRES,
        }
        try:
            command = await self.commands.create(body)
        except ApiError as error:
            self.logs.following = False
            self.logs.load.failed(error)
            self.changed()
            return
        state = self.logs
        state.command_id = command["id"]
        state.execution_id = command["executions"][0]["id"]
        self._follow_stop = self.feed.subscribe(
            f"command:{command['id']}", lambda m: self._on_follow(state, m)
        )
        await self._catch_up_follow()
        self._spawn(self.read_executions())

    async def stop_follow(self) -> None:
        """Cancel the streaming ``logs`` command (the text shown stays)."""
        state = self.logs
        if not state.following:
            return
        state.following = False
        if self._follow_stop is not None:
            self._follow_stop()
            self._follow_stop = None
        if state.load.phase is Phase.LOADING:
            state.load.ready(empty=not state.text)
        self.changed()
        if state.command_id is not None:
            with contextlib.suppress(ApiError):
                await self.commands.cancel(state.command_id)

    def _on_follow(self, state: LogState, message: Message) -> None:
        if state is not self.logs or not state.following:
            return
        event = message.get("event") or {}
        if event.get("execution_id") != state.execution_id:
            return
        if event.get("type") == "output" and event.get("stream") == "stdout":
            offset = int(event.get("offset", 0))
            data = base64.b64decode(event.get("data") or "")
            if offset > state.received:
                self._spawn(self._catch_up_follow())  # a gap: read it over REST
                return
            fresh = data[state.received - offset :]
            if fresh:
                self._append(state, fresh)
        elif event.get("type") == "execution" and event.get("state") in ENDED:
            self._spawn(self._finish_follow(state))

    def _append(self, state: LogState, data: bytes) -> None:
        state.received += len(data)
        state.text = _keep(state.text + data.decode("utf-8", "replace"))
        if state.load.phase is not Phase.READY:
            state.load.ready()
        self.changed()

    async def _catch_up_follow(self) -> None:
        """Read the follow's output recorded beyond what was received (after a gap or reconnect)."""
        state = self.logs
        if state.command_id is None or state.execution_id is None:
            return
        try:
            page = await self.commands.output(
                state.command_id, state.execution_id, offset=state.received
            )
        except ApiError as error:
            if state is self.logs and not state.text:
                state.load.failed(error)
                self.changed()
            return
        if state is not self.logs:
            return
        data = base64.b64decode(page["data"]) if page["data"] else b""
        if page["offset"] == state.received and data:
            self._append(state, data)
        detail = await self.commands.get(state.command_id)
        execution = detail["executions"][0]
        if execution["state"] in ENDED:
            await self._finish_follow(state)

    async def _finish_follow(self, state: LogState) -> None:
        """The follow ended on the node (refused, timed out, cancelled): show why."""
        if state is not self.logs or state.command_id is None:
            return
        try:
            detail = await self.commands.get(state.command_id)
        except ApiError:
            return
        execution = detail["executions"][0]
        if execution["state"] not in ENDED or state is not self.logs:
            return
        if state.following and self._follow_stop is not None:
            self._follow_stop()
            self._follow_stop = None
        was_following = state.following
        state.following = False
        if execution["state"] in ("refused", "failed", "expired") or (
            execution["state"] == "timed_out" and not state.text
        ):
            _fail(state.load, problem_of(execution))
        elif state.load.phase is not Phase.READY or not state.text:
            state.load.ready(empty=not state.text)
        if was_following or state.load.problem is not None:
            self.changed()


def _fail(load: Load, problem: Problem) -> None:
    load.phase, load.problem = Phase.ERROR, problem


def _keep(text: str) -> str:
    """At most :data:`LOG_KEEP` characters, cut at a line start."""
    if len(text) <= LOG_KEEP:
        return text
    cut = text[-LOG_KEEP:]
    newline = cut.find("\n")
    return cut[newline + 1 :] if 0 <= newline < 200 else cut

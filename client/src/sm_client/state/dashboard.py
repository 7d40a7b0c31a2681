"""The dashboard: how many nodes are online, the fleet's CPU and memory, the
busiest nodes and the latest commands.

Counts come from the registry (``list_nodes(status=…, limit=1)`` totals: every
enrolled node, heard from or not); averages and top lists from the metrics
summary; recent commands from the commands history. Status events on
``fleet`` trigger a quick re-read (coalesced); the averages are refreshed
every ``interval`` seconds while the dashboard is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Final

from sm_client.api import ApiError, CoreApi
from sm_client.api.commands import CommandsApi, CommandSummary
from sm_client.api.fleet import FleetApi
from sm_client.api.metrics import Averages, MetricsApi, TopNode
from sm_client.state.feed import Feed, Message, Stop
from sm_client.state.observable import Load, Observable

INTERVAL: Final = 5.0  # seconds between summary refreshes
EVENT_DELAY: Final = 0.3  # a status event re-reads the counts after this pause
RECENT: Final = 6
TOP: Final = 5


@dataclass
class TopEntry:
    """A busy node: its name (or id while unknown), CPU and memory percent."""

    node_id: str
    name: str
    cpu: float | None
    mem_percent: float | None


class DashboardState(Observable):
    def __init__(
        self,
        api: CoreApi,
        feed: Feed,
        *,
        interval: float = INTERVAL,
        event_delay: float = EVENT_DELAY,
        recent: int = RECENT,
        top: int = TOP,
    ) -> None:
        super().__init__()
        self.fleet = FleetApi(api)
        self.metrics = MetricsApi(api)
        self.commands_api = CommandsApi(api)
        self.feed = feed
        self.can_see_metrics = api.may("metrics:read")
        self.can_see_commands = api.may("commands:read")
        self.can_run = api.may("commands:run")
        self.interval = interval
        self.event_delay = event_delay
        self.recent = recent
        self.top = top

        self.load = Load()  # counts (and summary)
        self.online = 0
        self.offline = 0
        self.averages: Averages | None = None
        self.top_cpu: list[TopEntry] = []
        self.top_memory: list[TopEntry] = []
        self.summary_at: float | None = None
        self.metrics_load = Load()
        self.commands: list[CommandSummary] = []
        self.commands_load = Load()

        self._names: dict[str, str] = {}
        self._stops: list[Stop] = []
        self._poll: asyncio.Task[None] | None = None
        self._soon: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def total(self) -> int:
        return self.online + self.offline

    # --- lifetime ---------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to ``fleet``, read everything, then refresh the summary periodically."""
        if not self._stops:
            self._stops.append(self.feed.subscribe("fleet", self._on_fleet))
            self._stops.append(self.feed.on_resync(self.refresh))
        await self.refresh()
        if self._poll is None:
            self._poll = asyncio.get_running_loop().create_task(self._polling())

    def stop(self) -> None:
        for stop in self._stops:
            stop()
        self._stops.clear()
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        for task in list(self._tasks):
            task.cancel()

    async def refresh(self) -> None:
        """Re-read counts, summary and recent commands (concurrently)."""
        await asyncio.gather(self.refresh_counts(), self.refresh_summary(), self.refresh_commands())

    async def _polling(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            with contextlib.suppress(Exception):
                await asyncio.gather(self.refresh_counts(), self.refresh_summary())

    # --- pieces -----------------------------------------------------------------------

    async def refresh_counts(self) -> None:
        try:
            online, offline = await asyncio.gather(
                self.fleet.list_nodes(status="online", limit=1),
                self.fleet.list_nodes(status="offline", limit=1),
            )
        except ApiError as error:
            self.load.failed(error)
        else:
            self.online, self.offline = online["total"], offline["total"]
            self.load.ready(empty=self.total == 0)
        self.changed()

    async def refresh_summary(self) -> None:
        if not self.can_see_metrics:
            return
        try:
            summary = await self.metrics.summary(top=self.top)
            await self._learn_names(
                [t["node_id"] for t in summary["top_cpu"] + summary["top_memory"]]
            )
        except ApiError as error:
            self.metrics_load.failed(error)
        else:
            self.averages = summary["averages"]
            self.summary_at = summary["at"]
            self.top_cpu = [self._entry(t) for t in summary["top_cpu"]]
            self.top_memory = [self._entry(t) for t in summary["top_memory"]]
            self.metrics_load.ready(empty=not summary["top_cpu"] and self.averages["cpu"] is None)
        self.changed()

    async def refresh_commands(self) -> None:
        if not self.can_see_commands:
            return
        try:
            page = await self.commands_api.list_commands(limit=self.recent)
        except ApiError as error:
            self.commands_load.failed(error)
        else:
            self.commands = page["items"]
            self.commands_load.ready(empty=not self.commands)
        self.changed()

    def name_of(self, node_id: str) -> str:
        return self._names.get(node_id, node_id[:8])

    async def _learn_names(self, node_ids: list[str]) -> None:
        unknown = [i for i in dict.fromkeys(node_ids) if i not in self._names]
        if not unknown:
            return
        found = await asyncio.gather(
            *(self.fleet.get_node(i) for i in unknown), return_exceptions=True
        )
        for node_id, node in zip(unknown, found, strict=True):
            if isinstance(node, BaseException):
                if not isinstance(node, ApiError):
                    raise node
                self._names[node_id] = node_id[:8]  # deleted meanwhile
            else:
                self._names[node_id] = node["name"]

    def _entry(self, top: TopNode) -> TopEntry:
        return TopEntry(
            top["node_id"], self.name_of(top["node_id"]), top["cpu"], top["mem_percent"]
        )

    # --- live -------------------------------------------------------------------------

    def _on_fleet(self, message: Message) -> None:
        event = message.get("event") or {}
        if event.get("type") != "status" or self._soon is not None:
            return
        loop = asyncio.get_running_loop()
        self._soon = loop.call_later(self.event_delay, self._after_event)

    def _after_event(self) -> None:
        self._soon = None
        task = asyncio.get_running_loop().create_task(self._event_refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _event_refresh(self) -> None:
        await asyncio.gather(self.refresh_counts(), self.refresh_summary())

"""The node list: filters, one server-side page, live values for the rows shown.

One page is one ``list_nodes`` call (at most ``page_size`` nodes) and one
``MetricsApi.latest`` for exactly those ids. Sorting by CPU, memory or disk
(the metrics service's values, which the registry cannot order by) reads
every matching node (up to :data:`METRIC_SORT_MAX`) and their latest values,
sorts them here (offline nodes after online ones, nodes without values last)
and shows one page of that; the order is the one of that moment (a refresh
sorts again).

Live updates arrive only for the rows on the page (``node:<id>`` topics,
re-subscribed as the page changes) and for status changes (``fleet``); they
change the rows in place and are coalesced: row listeners hear the changed
ids at most every ``render_interval`` seconds. A whole-list change (new page,
filter, error) goes through :meth:`Observable.changed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, cast, get_args
from urllib.parse import quote

from sm_client.api import ApiError, CoreApi
from sm_client.api.fleet import FleetApi, Group, Node, NodeList, NodeSort, NodeStatus, SortOrder
from sm_client.api.metrics import MetricsApi, MetricValues, values_from_sample
from sm_client.state.feed import Feed, Message, Stop
from sm_client.state.observable import Load, Observable, Phase, Problem

PAGE_SIZE: Final = 100
RENDER_INTERVAL: Final = 0.25  # at most four row renders a second
DEBOUNCE: Final = 0.25  # typing in a filter field applies it after this pause
MetricSort = Literal["cpu", "memory", "disk"]
ListSort = NodeSort | MetricSort
# The value each metric sort orders by.
METRIC_SORTS: Final[dict[str, str]] = {
    "cpu": "cpu",
    "memory": "mem_percent",
    "disk": "disk_percent",
}
SORTS: Final[tuple[ListSort, ...]] = (*get_args(NodeSort), *get_args(MetricSort))
METRIC_SORT_MAX: Final = 5000  # a metric sort orders at most this many nodes (the first by name)
READ_CHUNK: Final = 1000  # the most nodes (or latest values) one call returns
STATUSES: Final[tuple[NodeStatus, ...]] = get_args(NodeStatus)
RowListener = Callable[[list[str]], None]

_LABEL_KEY = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class NodeFilters:
    """What the list asks the registry for (empty text and None mean no filter)."""

    q: str = ""
    status: NodeStatus | None = None
    group: str | None = None
    selector: str = ""
    sort: ListSort = "name"
    order: SortOrder = "asc"

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> NodeFilters:
        """From the route's query (``/nodes?selector=env%3Dprod&status=online``)."""
        status = params.get("status")
        sort = params.get("sort")
        order = params.get("order")
        return cls(
            q=params.get("q", "").strip(),
            status=status if status in STATUSES else None,
            group=params.get("group") or None,
            selector=params.get("selector", "").strip(),
            sort=sort if sort in SORTS else "name",
            order="desc" if order == "desc" else "asc",
        )

    @property
    def active(self) -> int:
        """How many filters narrow the list (a phone shows it on its filter button)."""
        return sum(1 for f in (self.q, self.status, self.group, self.selector) if f)


@dataclass
class NodeRow:
    """One node as the list shows it; ``values`` are its latest metrics (None: none yet)."""

    node: Node
    values: MetricValues | None = None
    sampled_at: float | None = None

    @property
    def id(self) -> str:
        return self.node["id"]

    @property
    def online(self) -> bool:
        return self.node["status"] == "online"


def parse_label_changes(text: str) -> tuple[dict[str, str], list[str]]:
    """``env=prod, tier=web, -canary`` → ({env: prod, tier: web}, [canary]).

    ``key=value`` sets (``key=`` sets an empty value), ``-key`` removes. Raises
    ValueError naming the first part that is not a valid label change.
    """
    sets: dict[str, str] = {}
    removes: list[str] = []
    for raw in re.split(r"[,\n]", text):
        part = raw.strip()
        if not part:
            continue
        if part.startswith("-"):
            key = part[1:].strip()
            if not _LABEL_KEY.match(key) or key in sets:
                raise ValueError(part)
            if key not in removes:
                removes.append(key)
            continue
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value) or key in removes:
            raise ValueError(part)
        sets[key] = value
    if not sets and not removes:
        raise ValueError(text)
    return sets, removes


def first_order(key: ListSort) -> SortOrder:
    """The order a sort starts in: the newest or busiest first, names A to Z."""
    return "desc" if key == "last_seen" or key in METRIC_SORTS else "asc"


def by_metric(
    nodes: list[Node],
    values: Mapping[str, tuple[MetricValues, float]],
    metric: str,
    *,
    descending: bool,
) -> list[Node]:
    """``nodes`` ordered by their latest ``metric``: online nodes first, then offline
    ones (their values are the last they sent), then nodes without a value
    (whichever the direction); ties by name, then id."""

    def value(node: Node) -> float | None:
        latest = values.get(node["id"])
        found = latest[0].get(metric) if latest is not None else None
        return float(found) if isinstance(found, int | float) else None

    def key(node: Node) -> tuple[bool, bool, float, str, str]:
        number = value(node)
        rank = 0.0 if number is None else (-number if descending else number)
        stale = node["status"] != "online"
        return (number is None, stale, rank, node["name"].lower(), node["id"])

    return sorted(nodes, key=key)


class NodesState(Observable):
    def __init__(
        self,
        api: CoreApi,
        feed: Feed,
        filters: NodeFilters | None = None,
        *,
        page_size: int = PAGE_SIZE,
        render_interval: float = RENDER_INTERVAL,
        debounce: float = DEBOUNCE,
    ) -> None:
        super().__init__()
        self.fleet = FleetApi(api)
        self.metrics = MetricsApi(api)
        self.feed = feed
        self.can_write = api.may("nodes:write")
        self.can_run = api.may("commands:run")
        self.can_see_metrics = api.may("metrics:read")
        self.page_size = page_size
        self.render_interval = render_interval
        self.debounce = debounce

        self.filters = filters or NodeFilters()
        self.load = Load()
        self.busy = False  # a new page is on its way (the old one stays shown)
        self.rows: list[NodeRow] = []
        self.total = 0
        self.offset = 0
        self.groups: list[Group] = []
        self.selected: set[str] = set()
        self.selector_problem: Problem | None = None  # shown under the selector field
        self.action = Load(Phase.READY)  # a bulk change: READY, LOADING or ERROR

        self._by_id: dict[str, NodeRow] = {}
        self._generation = 0
        self._row_listeners: list[RowListener] = []
        self._dirty: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._topics: dict[str, Stop] = {}
        self._stops: list[Stop] = []
        self._pending: asyncio.Task[None] | None = None

    # --- lifetime ---------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to ``fleet``, then read the first page and the groups."""
        if not self._stops:
            self._stops.append(self.feed.subscribe("fleet", self._on_fleet))
            self._stops.append(self.feed.on_resync(self.resync))
        await asyncio.gather(self.refresh(), self.load_groups())

    def stop(self) -> None:
        for stop in self._stops:
            stop()
        self._stops.clear()
        self._follow([])
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._generation += 1  # answers still on their way are dropped

    async def resync(self) -> None:
        """After a reconnect: re-read the page and its values (events are not replayed)."""
        await self.refresh()

    def listen_rows(self, listener: RowListener) -> Callable[[], None]:
        """Call ``listener`` with the ids of rows changed in place (coalesced)."""
        self._row_listeners.append(listener)

        def stop() -> None:
            if listener in self._row_listeners:
                self._row_listeners.remove(listener)

        return stop

    def row(self, node_id: str) -> NodeRow | None:
        return self._by_id.get(node_id)

    # --- loading ----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the current page (and its latest values) for the current filters."""
        self._generation += 1
        generation = self._generation
        if not self.rows:
            self.load.loading()
        self.busy = True
        self.changed()
        f = self.filters
        try:
            if f.sort in METRIC_SORTS:
                nodes, total, values = await self._metric_sorted_page(f)
            else:
                nodes, total = await self._registry_page(f, cast(NodeSort, f.sort))
                values = {}
        except ApiError as error:
            if generation != self._generation:
                return
            self.selector_problem = (
                Problem.of(error) if error.status == 400 and f.selector else None
            )
            self._show([], 0)
            self.load.failed(error)
            self.busy = False
            self.changed()
            return
        if generation != self._generation:
            return
        if f.sort not in METRIC_SORTS:
            values = await self._latest([n["id"] for n in nodes])
            if generation != self._generation:
                return
        self.selector_problem = None
        rows = []
        for node in nodes:
            latest = values.get(node["id"])
            rows.append(NodeRow(node, *(latest or (None, None))))
        self._show(rows, total)
        self.load.ready(empty=not rows)
        self.busy = False
        self.changed()

    async def _registry_page(self, f: NodeFilters, sort: NodeSort) -> tuple[list[Node], int]:
        """The page at ``offset`` in the registry's order (the last page if it emptied)."""
        page = await self._list(f, sort, self.page_size, self.offset)
        if not page["items"] and page["total"] and self.offset:
            # the page emptied under us (nodes deleted or filtered): show the last one
            self.offset = (page["total"] - 1) // self.page_size * self.page_size
            page = await self._list(f, sort, self.page_size, self.offset)
        return page["items"], page["total"]

    async def _metric_sorted_page(
        self, f: NodeFilters
    ) -> tuple[list[Node], int, dict[str, tuple[MetricValues, float]]]:
        """Every matching node (up to :data:`METRIC_SORT_MAX`) ordered by its latest
        value of ``f.sort``; the page at ``offset`` of that, and the values."""
        nodes: list[Node] = []
        total = 0
        while len(nodes) < METRIC_SORT_MAX:
            page = await self._list(f, "name", READ_CHUNK, len(nodes))
            nodes.extend(page["items"])
            total = page["total"]
            if not page["items"] or len(nodes) >= total:
                break
        nodes = nodes[:METRIC_SORT_MAX]
        if len(nodes) <= self.page_size:
            values = await self._latest([n["id"] for n in nodes])
        else:  # every node's values, a page at a time (named ids would make huge URLs)
            values = await self._latest_of_every_node()
        ordered = by_metric(nodes, values, METRIC_SORTS[f.sort], descending=f.order == "desc")
        if self.offset >= len(ordered) and self.offset:
            self.offset = max(0, (len(ordered) - 1) // self.page_size * self.page_size)
        shown = ordered[self.offset : self.offset + self.page_size]
        return shown, len(ordered), {n["id"]: values[n["id"]] for n in shown if n["id"] in values}

    async def _list(self, f: NodeFilters, sort: NodeSort, limit: int, offset: int) -> NodeList:
        return await self.fleet.list_nodes(
            q=f.q or None,
            status=f.status,
            group=f.group,
            selector=f.selector or None,
            sort=sort,
            order=f.order if sort == f.sort else "asc",
            limit=limit,
            offset=offset,
        )

    async def _latest_of_every_node(self) -> dict[str, tuple[MetricValues, float]]:
        values: dict[str, tuple[MetricValues, float]] = {}
        if not self.can_see_metrics:
            return values
        after: str | None = None
        try:
            while True:
                page = await self.metrics.latest(limit=READ_CHUNK, after=after)
                values |= {i["node_id"]: (i["values"], i["ts"]) for i in page["items"]}
                after = page["next_after"]
                if after is None or not page["items"]:
                    return values
        except ApiError:
            return values  # what was read; the rest sort as if without values

    async def _latest(self, ids: list[str]) -> dict[str, tuple[MetricValues, float]]:
        if not ids or not self.can_see_metrics:
            return {}
        try:
            page = await self.metrics.latest(ids, limit=len(ids))
        except ApiError:
            return {}  # the list still shows; values arrive live
        return {item["node_id"]: (item["values"], item["ts"]) for item in page["items"]}

    def _show(self, rows: list[NodeRow], total: int) -> None:
        self.rows = rows
        self.total = total
        self._by_id = {r.id: r for r in rows}
        self._dirty.clear()
        self._follow([r.id for r in rows] if self.can_see_metrics else [])

    def _follow(self, ids: list[str]) -> None:
        """Hold exactly the ``node:<id>`` topics of ``ids``."""
        wanted = set(ids)
        for node_id in [i for i in self._topics if i not in wanted]:
            self._topics.pop(node_id)()
        for node_id in ids:
            if node_id not in self._topics:
                self._topics[node_id] = self.feed.subscribe(f"node:{node_id}", self._on_metrics)

    @property
    def followed(self) -> list[str]:
        """The node ids whose live topics this list holds (the rows shown)."""
        return sorted(self._topics)

    async def load_groups(self) -> None:
        try:
            self.groups = await self.fleet.list_groups()
        except ApiError:
            self.groups = []
        self.changed()

    # --- filters, sort, pages ---------------------------------------------------------

    async def apply(self, **changes: Any) -> None:
        """Change filters (``q=``, ``status=``, ``group=``, ``selector=``, ``sort=``, ``order=``)
        and read the first page."""
        self._cancel_pending()
        filters = replace(self.filters, **changes)
        if filters == self.filters and self.load.phase is not Phase.ERROR:
            return
        self.filters = filters
        self.offset = 0
        await self.refresh()

    async def set_query(self, text: str) -> None:
        await self.apply(q=text.strip())

    async def set_selector(self, text: str) -> None:
        await self.apply(selector=text.strip())

    async def set_status(self, status: NodeStatus | None) -> None:
        await self.apply(status=status)

    async def set_group(self, group: str | None) -> None:
        await self.apply(group=group or None)

    async def sort_by(self, key: ListSort) -> None:
        """Sort by ``key`` (the newest or busiest first for times and metrics); the same
        key again flips the order."""
        if key == self.filters.sort:
            await self.apply(order="desc" if self.filters.order == "asc" else "asc")
        else:
            await self.apply(sort=key, order=first_order(key))

    async def clear_filters(self) -> None:
        await self.apply(q="", status=None, group=None, selector="")

    def type_query(self, text: str) -> None:
        """The search field changed: apply it after a short pause in typing."""
        self._later(lambda: self.set_query(text))

    def type_selector(self, text: str) -> None:
        self._later(lambda: self.set_selector(text))

    def _later(self, apply: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._cancel_pending()
        delay = self.debounce

        async def run() -> None:
            await asyncio.sleep(delay)
            self._pending = None
            await apply()

        self._pending = asyncio.get_running_loop().create_task(run())

    def _cancel_pending(self) -> None:
        task, self._pending = self._pending, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def settle(self) -> None:
        """Wait for a debounced filter to be applied (tests)."""
        task = self._pending
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def page_count(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def page_index(self) -> int:
        return self.offset // self.page_size

    @property
    def has_next(self) -> bool:
        return self.offset + self.page_size < self.total

    @property
    def has_previous(self) -> bool:
        return self.offset > 0

    async def next_page(self) -> None:
        if self.has_next:
            self.offset += self.page_size
            await self.refresh()

    async def previous_page(self) -> None:
        if self.has_previous:
            self.offset = max(0, self.offset - self.page_size)
            await self.refresh()

    # --- selection and bulk actions ---------------------------------------------------

    def toggle(self, node_id: str, on: bool | None = None) -> None:
        """Select or unselect one node (the selection outlives page and filter changes)."""
        if on is None:
            on = node_id not in self.selected
        if on:
            self.selected.add(node_id)
        else:
            self.selected.discard(node_id)
        self.changed()

    @property
    def page_selection(self) -> bool | None:
        """True if every row shown is selected, False if none, None if some."""
        shown = [r.id for r in self.rows if r.id in self.selected]
        if not shown:
            return False
        return True if len(shown) == len(self.rows) else None

    def select_page(self, on: bool) -> None:
        ids = {r.id for r in self.rows}
        self.selected = self.selected | ids if on else self.selected - ids
        self.changed()

    def clear_selection(self) -> None:
        self.selected = set()
        self.changed()

    def run_route(self) -> str:
        """The composer's route with the selected nodes as targets."""
        return "/commands/new?nodes=" + quote(",".join(sorted(self.selected)), safe=",")

    async def set_labels(self, sets: dict[str, str], removes: list[str]) -> bool:
        labels: dict[str, Any] = {}
        if sets:
            labels["set"] = sets
        if removes:
            labels["remove"] = removes
        return await self._bulk({"labels": labels})

    async def move_to_group(self, group: str | None) -> bool:
        return await self._bulk({"group": group or None})

    async def _bulk(self, change: dict[str, Any]) -> bool:
        if not self.selected:
            return False
        self.action.loading()
        self.changed()
        try:
            await self.fleet.bulk_update({"node_ids": sorted(self.selected), **change})  # type: ignore[typeddict-item]
        except ApiError as error:
            self.action.failed(error)
            self.changed()
            return False
        self.action.ready()
        await asyncio.gather(self.refresh(), self.load_groups())
        return True

    def dismiss_action_problem(self) -> None:
        self.action.ready()
        self.changed()

    # --- live events ------------------------------------------------------------------

    def _on_fleet(self, message: Message) -> None:
        event = message.get("event") or {}
        if event.get("type") != "status":
            return
        row = self._by_id.get(str(event.get("node_id")))
        status = event.get("status")
        if row is None or status not in STATUSES or row.node["status"] == status:
            return
        row.node["status"] = cast(NodeStatus, status)
        self._mark(row.id)

    def _on_metrics(self, message: Message) -> None:
        row = self._by_id.get(str(message.get("node_id")))
        heartbeat = message.get("heartbeat") or {}
        if row is None or "sample" not in heartbeat:
            return
        sent_at = float(heartbeat.get("sent_at") or message.get("received_at") or 0)
        if row.sampled_at is not None and sent_at < row.sampled_at:
            return  # an older, buffered sample
        try:
            row.values = values_from_sample(heartbeat["sample"])
        except (KeyError, TypeError, ValueError):
            return
        row.sampled_at = sent_at
        row.node["status"] = "online"
        self._mark(row.id)

    def _mark(self, node_id: str) -> None:
        self._dirty.add(node_id)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self.render_interval, self._deliver)

    def _deliver(self) -> None:
        self._flush = None
        ids = [i for i in self._dirty if i in self._by_id]
        self._dirty.clear()
        if ids:
            for listener in list(self._row_listeners):
                listener(ids)

"""The node list: a dense sortable table on wide windows, cards on phones.

Renders from :class:`~sm_client.state.nodes.NodesState`. The filter fields
are built once (typing never loses focus); the rows are rebuilt only when the
page changes, and live values change a row's controls in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

import flet as ft

from sm_client.api.fleet import NodeStatus
from sm_client.state.nodes import (
    METRIC_SORTS,
    SORTS,
    ListSort,
    NodeFilters,
    NodeRow,
    NodesState,
    first_order,
    parse_label_changes,
)
from sm_client.state.observable import Phase
from sm_client.views import fleet_format as fmt
from sm_client.views import ids, state_panels
from sm_client.views.context import RouteParams, ScreenContext

# Rows per page: every control shown costs serialising and diffing in Python,
# so a page is kept to what a screen or two shows (the state allows up to 100).
PAGE_SIZE: Final = 50
FIRST_ROWS: Final = 16  # rows built before the first update (about a screenful)
TABLE_WIDTH: Final = 860  # from this content width on, a table; below, cards
RAIL: Final = 88
ALL: Final = "__all__"
NO_GROUP: Final = "__none__"

# Column widths of the table (None: share the rest).
COLUMNS: Final[tuple[tuple[str, int | None, int], ...]] = (
    ("name", None, 4),
    ("status", 96, 0),
    ("cpu", None, 2),
    ("memory", None, 2),
    ("disk", None, 2),
    ("network", 180, 0),
    ("group", None, 3),
    ("last_seen", 104, 0),
)
SORTABLE: Final[dict[str, ListSort]] = {
    "name": "name",
    "cpu": "cpu",
    "memory": "memory",
    "disk": "disk",
    "last_seen": "last_seen",
}


def _cell(control: ft.Control, width: int | None, expand: int) -> ft.Control:
    if width is not None:
        return ft.Container(control, width=width)
    return ft.Container(control, expand=expand)


def _update(control: ft.Control) -> None:
    """Send ``control``'s changes (nothing to do while it is not on a page)."""
    with contextlib.suppress(RuntimeError):  # "must be added to the page first"
        control.update()


class _Meter:
    """A usage figure: its value and a thin bar (with a caption on phones)."""

    def __init__(self, caption: str | None = None) -> None:
        self.caption = caption
        self.text = ft.Text(fmt.DASH, size=12 if caption else 13, weight=ft.FontWeight.W_500)
        self.bar = ft.ProgressBar(
            value=0,
            bar_height=4,
            border_radius=2,
            bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
            color=ft.Colors.PRIMARY,
        )
        self.control = ft.Column([self.text, self.bar], spacing=3, tight=True)

    def show(self, value: float | None) -> None:
        shown = fmt.percent(value)
        self.text.value = f"{self.caption} {shown}" if self.caption else shown
        self.bar.value = 0 if value is None else max(0.0, min(1.0, value / 100))
        self.bar.color = fmt.level(value)


class _RowView:
    """A table row (wide) or a card (phone), bound to one NodeRow at a time.

    The list keeps a pool of these: a new page or filter re-binds the views it
    has (only changed properties travel to the browser) instead of building a
    hundred rows of controls again. Every control costs serialising and
    diffing, so a row is kept to about twenty.
    """

    def __init__(self, screen: NodesScreen, wide: bool) -> None:
        self.screen = screen
        self.wide = wide
        self.node_id = ""
        t = screen.ctx.i18n.t
        self.name = ft.Text(
            weight=ft.FontWeight.W_600, no_wrap=True, overflow=ft.TextOverflow.ELLIPSIS
        )
        self.sub = ft.Text(
            size=12,
            color=ft.Colors.ON_SURFACE_VARIANT,
            no_wrap=True,
            overflow=ft.TextOverflow.ELLIPSIS,
        )
        self.status = ft.Text(size=12, weight=ft.FontWeight.W_500, no_wrap=True)
        self.cpu = _Meter(None if wide else t("nodes.col.cpu"))
        self.mem = _Meter(None if wide else t("nodes.col.memory"))
        self.disk = _Meter(None if wide else t("nodes.col.disk"))
        self.net = ft.Text(size=12, no_wrap=True)
        self.tags = ft.Text(
            size=12,
            color=ft.Colors.ON_SURFACE_VARIANT,
            no_wrap=True,
            overflow=ft.TextOverflow.ELLIPSIS,
        )
        self.seen = ft.Text(size=12, color=ft.Colors.ON_SURFACE_VARIANT, no_wrap=True)
        self.check = ft.Checkbox(on_change=self._toggled)
        self.check_label = ft.Semantics(content=self.check)
        self.label = ft.Semantics(button=True, content=self._body(), expand=True)
        parts: list[ft.Control] = []
        if screen.state.can_write or screen.state.can_run:
            parts.append(self.check_label)
        parts.append(self.label)
        row = ft.Row(
            parts,
            spacing=0,
            vertical_alignment=(
                ft.CrossAxisAlignment.CENTER if wide else ft.CrossAxisAlignment.START
            ),
        )
        if wide:  # the list draws the dividers
            self.control: ft.Row | ft.Container = row
        else:
            self.control = ft.Container(
                row,
                padding=ft.Padding.only(right=12, top=4, bottom=12),
                margin=ft.Margin.symmetric(horizontal=12, vertical=4),
                border_radius=12,
                bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
            )

    def _body(self) -> ft.Control:
        names = ft.Column([self.name, self.sub], spacing=0, tight=True)
        if self.wide:
            cells: list[ft.LayoutControl] = [
                names,
                self.status,
                self.cpu.control,
                self.mem.control,
                self.disk.control,
                self.net,
                self.tags,
                self.seen,
            ]
            for cell, (_, width, expand) in zip(cells, COLUMNS, strict=True):
                if width is not None:
                    cell.width = width
                else:
                    cell.expand = expand
            content: ft.Control = ft.Row(
                list(cells), spacing=16, vertical_alignment=ft.CrossAxisAlignment.CENTER
            )
            padding = ft.Padding.symmetric(vertical=8, horizontal=8)
        else:
            names.expand = True
            self.tags.expand = True
            self.tags.text_align = ft.TextAlign.RIGHT
            self.cpu.control.expand = self.mem.control.expand = self.disk.control.expand = True
            content = ft.Column(
                [
                    ft.Row([names, self.status], spacing=8),
                    ft.Row([self.cpu.control, self.mem.control, self.disk.control], spacing=12),
                    ft.Row([self.net, self.tags], spacing=8),
                ],
                spacing=8,
                tight=True,
            )
            padding = ft.Padding.only(top=10, left=4)
        return ft.Container(
            content, padding=padding, on_click=self._open, ink=True, border_radius=8
        )

    def bind(self, row: NodeRow) -> None:
        """Show ``row`` in these controls (a reused view takes another node)."""
        t = self.screen.ctx.i18n.t
        node = row.node
        self.node_id = row.id
        self.name.value = node["name"]
        host = node["hostname"] if node["hostname"] != node["name"] else node["facts"].get("os", "")
        self.sub.value = host
        labels = [f"{k}={v}" if v else k for k, v in node["labels"].items()]
        tags = " · ".join([node["group"], *labels] if node["group"] else labels)
        self.tags.value = tags
        self.tags.tooltip = tags or None
        self.check.value = row.id in self.screen.state.selected
        self.check_label.identifier = ids.node_select(row.id)
        self.check_label.label = t("nodes.select", name=node["name"])
        self.label.identifier = ids.node_row(row.id)
        self.show(row)

    def show(self, row: NodeRow) -> None:
        """The live part: status, values, last seen."""
        i18n = self.screen.ctx.i18n
        t = i18n.t
        online = row.online
        status = t("nodes.online") if online else t("nodes.offline")
        values = row.values
        self.cpu.show(values["cpu"] if values else None)
        self.mem.show(values["mem_percent"] if values else None)
        self.disk.show(values["disk_percent"] if values else None)
        rx = fmt.rate(values["net_rx_bps"] if values else None)
        tx = fmt.rate(values["net_tx_bps"] if values else None)
        self.net.value = t("nodes.net", rx=rx, tx=tx)
        if online and row.sampled_at is not None:
            seen = fmt.ago(i18n, time.time() - row.sampled_at)
        else:
            seen = fmt.since_iso(i18n, row.node["last_seen"])
        self.seen.value = seen
        if self.wide:
            self.status.value = status
        else:  # a card says "Online" or when it was last seen
            self.status.value = status if online else seen
            self.seen.value = ""
        self.status.color = fmt.status_color(online)
        self.label.label = t("nodes.row_label", name=row.node["name"], status=status)
        self.control.opacity = 1.0 if online else 0.72

    def _toggled(self, e: ft.Event[ft.Checkbox]) -> None:
        self.screen.state.toggle(self.node_id, bool(e.control.value))

    def _open(self, _: ft.Event[ft.Container]) -> None:
        self.screen.ctx.navigate(f"/nodes/{self.node_id}")


class NodesScreen:
    def __init__(self, ctx: ScreenContext, params: RouteParams) -> None:
        self.ctx = ctx
        self.state = NodesState(
            ctx.api, ctx.feed, NodeFilters.from_params(params), page_size=PAGE_SIZE
        )
        page_width = ctx.page.width or 1440
        self.wide = (page_width - RAIL if page_width >= 840 else page_width) >= TABLE_WIDTH
        self.filters_open = False
        self._stops: list[Callable[[], None]] = []
        self._row_views: dict[str, _RowView] = {}  # the page's rows by node id
        self._pool: list[_RowView] = []  # row views kept for reuse
        self._tasks: set[asyncio.Task[None]] = set()
        self._shown_rows: list[NodeRow] | None = None
        self._shown_phase: Phase | None = None

        f = self.state.filters
        self.search = ft.TextField(
            value=f.q,
            prefix_icon=ft.Icons.SEARCH,
            dense=True,
            border_radius=8,
            content_padding=ft.Padding.symmetric(horizontal=12, vertical=8),
            on_change=self._search_changed,
            on_submit=self._search_submitted,
        )
        self.selector = ft.TextField(
            value=f.selector,
            prefix_icon=ft.Icons.SELL_OUTLINED,
            dense=True,
            border_radius=8,
            content_padding=ft.Padding.symmetric(horizontal=12, vertical=8),
            on_change=self._selector_changed,
            on_submit=self._selector_submitted,
        )
        self.status = ft.Dropdown(dense=True, on_select=self._status_chosen, width=170)
        self.group = ft.Dropdown(dense=True, on_select=self._group_chosen, width=190)
        self.sort = ft.Dropdown(dense=True, on_select=self._sort_chosen, width=170)
        self.order = ft.IconButton(on_click=self._order_flipped)

        self.toolbar = ft.Container()
        self.summary = ft.Container()
        self.bulk = ft.Container()
        self.listing = ft.Container(expand=True)
        self.pager = ft.Container()
        self.body = ft.Container(
            ft.Column(
                [self.toolbar, self.summary, self.bulk, self.listing, self.pager],
                spacing=0,
                expand=True,
            ),
            expand=True,
            on_size_change=self._resized,
            size_change_interval=100,
        )
        self.root = ft.Semantics(identifier=ids.screen("nodes"), content=self.body)
        self.render()

    # --- Screen -----------------------------------------------------------------------

    def control(self) -> ft.Control:
        return self.root

    async def enter(self) -> None:
        self._stops = [
            self.state.listen(self._state_changed),
            self.state.listen_rows(self._rows_changed),
            self.ctx.i18n.listen(self._relabel),
        ]
        await self.state.start()

    def leave(self) -> None:
        for stop in self._stops:
            stop()
        self._stops = []
        for task in list(self._tasks):
            task.cancel()
        self.state.stop()

    # --- rendering --------------------------------------------------------------------

    def render(self) -> None:
        """Everything from state (the fields keep their instances)."""
        self._label_fields()
        self._render_toolbar()
        self._render_summary()
        self._render_bulk()
        self._render_listing(force=True)
        self._render_pager()

    def _push(self, *controls: ft.Control) -> None:
        """Send the changes of ``controls`` (of the whole screen when none are named)."""
        if not controls:
            _update(self.root)
            return
        with contextlib.suppress(RuntimeError, AttributeError):
            if self.root.page is not None:
                self.ctx.page.update(*controls)

    def _state_changed(self) -> None:
        self._sync_fields()
        self._render_summary()
        self._render_bulk()
        changed = self._render_listing()
        self._render_pager()
        self._push(self.toolbar, self.summary, self.bulk, self.pager, *changed)

    def _relabel(self) -> None:
        self.render()
        self._push()

    def _resized(self, e: ft.LayoutSizeChangeEvent[ft.LayoutControl]) -> None:
        wide = e.width >= TABLE_WIDTH
        if wide != self.wide:
            self.wide = wide
            self.render()
            self._push()

    def _rows_changed(self, node_ids: list[str]) -> None:
        """Live values: change those rows' controls and send them in one update."""
        changed: list[ft.Control] = []
        for node_id in node_ids:
            view, row = self._row_views.get(node_id), self.state.row(node_id)
            if view is None or row is None:
                continue
            view.show(row)
            changed.append(view.control)
        if changed:
            self._push(*changed)

    def _label_fields(self) -> None:
        t = self.ctx.i18n.t
        self.search.hint_text = t("nodes.search")
        self.selector.label = t("nodes.selector")
        self.selector.hint_text = t("nodes.selector_hint")
        self.status.label = t("nodes.status")
        self.status.options = [
            ft.DropdownOption(key=ALL, text=t("nodes.status.all")),
            ft.DropdownOption(key="online", text=t("nodes.status.online")),
            ft.DropdownOption(key="offline", text=t("nodes.status.offline")),
        ]
        self.sort.label = t("nodes.sort")
        self.sort.options = [
            ft.DropdownOption(key=key, text=t(f"nodes.sort.{key}")) for key in self._sorts()
        ]
        self._sync_fields()

    def _sorts(self) -> list[ListSort]:
        """The sorts offered: by a metric only to those who may read metrics."""
        return [k for k in SORTS if k not in METRIC_SORTS or self.state.can_see_metrics]

    def _sync_fields(self) -> None:
        t = self.ctx.i18n.t
        f = self.state.filters
        self.status.value = f.status or ALL
        self.group.label = t("nodes.group")
        self.group.options = [
            ft.DropdownOption(key=ALL, text=t("nodes.group.all")),
            *(ft.DropdownOption(key=g["name"], text=g["name"]) for g in self.state.groups),
        ]
        self.group.value = f.group or ALL
        self.sort.value = f.sort
        self.order.icon = ft.Icons.ARROW_UPWARD if f.order == "asc" else ft.Icons.ARROW_DOWNWARD
        self.order.tooltip = t(f"nodes.order.{f.order}")
        problem = self.state.selector_problem
        self.selector.error = problem.detail or problem.title if problem else None

    def _render_toolbar(self) -> None:
        t = self.ctx.i18n.t
        search = ft.Semantics(
            identifier=ids.NODES_SEARCH, label=t("nodes.search"), content=self.search
        )
        selector = ft.Semantics(
            identifier=ids.NODES_FILTER_LABEL, label=t("nodes.selector"), content=self.selector
        )
        status = ft.Semantics(
            identifier=ids.NODES_FILTER_STATUS, label=t("nodes.status"), content=self.status
        )
        group = ft.Semantics(
            identifier=ids.NODES_FILTER_GROUP, label=t("nodes.group"), content=self.group
        )
        sort = ft.Semantics(identifier=ids.NODES_SORT, label=t("nodes.sort"), content=self.sort)
        order = ft.Semantics(label=t(f"nodes.order.{self.state.filters.order}"), content=self.order)
        if self.wide:
            self.status.width, self.group.width, self.sort.width = 160, 180, 160
            self.toolbar.content = ft.Container(
                ft.Row(
                    [
                        ft.Container(search, expand=3),
                        ft.Container(selector, expand=3),
                        status,
                        group,
                        sort,
                        order,
                    ],
                    spacing=12,
                    vertical_alignment=ft.CrossAxisAlignment.CENTER,
                ),
                padding=ft.Padding.only(left=16, right=16, top=12, bottom=8),
            )
            return
        active = self.state.filters.active - (1 if self.state.filters.q else 0)
        toggle_label = t("nodes.filters_active", n=active) if active else t("nodes.filters")
        toggle = ft.Semantics(
            identifier=ids.NODES_FILTERS,
            label=toggle_label,
            content=ft.IconButton(
                icon=ft.Icons.FILTER_LIST,
                selected=self.filters_open,
                on_click=self._filters_toggled,
                badge=str(active) if active else None,
            ),
        )
        rows: list[ft.Control] = [
            ft.Row([ft.Container(search, expand=True), toggle], spacing=4),
        ]
        if self.filters_open:
            for dropdown in (self.status, self.group, self.sort):
                dropdown.width = None
                dropdown.expand = True
            rows.append(
                ft.Container(
                    ft.Column(
                        [
                            selector,
                            ft.Row(
                                [
                                    ft.Container(status, expand=True),
                                    ft.Container(group, expand=True),
                                ],
                                spacing=8,
                            ),
                            ft.Row([ft.Container(sort, expand=True), order], spacing=4),
                            ft.Row(
                                [
                                    ft.TextButton(
                                        t("nodes.clear_filters"),
                                        icon=ft.Icons.FILTER_LIST_OFF,
                                        on_click=self._filters_cleared,
                                    )
                                ],
                                alignment=ft.MainAxisAlignment.END,
                            ),
                        ],
                        spacing=10,
                        tight=True,
                    ),
                    padding=12,
                    border_radius=12,
                    bgcolor=ft.Colors.SURFACE_CONTAINER,
                )
            )
        self.toolbar.content = ft.Container(
            ft.Column(rows, spacing=8, tight=True),
            padding=ft.Padding.only(left=12, right=8, top=10, bottom=4),
        )

    def _render_summary(self) -> None:
        t = self.ctx.i18n.t
        s = self.state
        count = t("nodes.count", n=s.total)
        parts: list[ft.Control] = []
        if (self.state.can_write or self.state.can_run) and not self.wide:
            parts.append(
                ft.Semantics(
                    identifier=ids.NODES_SELECT_ALL,
                    label=t("nodes.select_all"),
                    content=ft.Checkbox(
                        value=s.page_selection is True,
                        on_change=self._page_toggled,
                        disabled=not s.rows,
                    ),
                )
            )
        parts.append(
            ft.Semantics(
                identifier=ids.NODES_COUNT,
                label=count,
                content=ft.Text(count, size=13, color=ft.Colors.ON_SURFACE_VARIANT),
            )
        )
        if s.busy and s.rows:
            parts.append(ft.ProgressRing(width=14, height=14, stroke_width=2))
        self.summary.content = ft.Container(
            ft.Row(parts, spacing=8, vertical_alignment=ft.CrossAxisAlignment.CENTER),
            padding=ft.Padding.only(left=16 if self.wide else 8, right=16, bottom=4),
        )

    def _render_bulk(self) -> None:
        s = self.state
        t = self.ctx.i18n.t
        if not s.selected:
            self.bulk.content = None
            return
        actions: list[ft.Control] = []
        if s.can_run:
            actions.append(
                ft.Semantics(
                    identifier=ids.NODES_BULK_RUN,
                    content=ft.FilledTonalButton(
                        t("nodes.bulk_run"), icon=ft.Icons.TERMINAL, on_click=self._run
                    ),
                )
            )
        if s.can_write:
            actions.append(
                ft.Semantics(
                    identifier=ids.NODES_BULK_LABELS,
                    content=ft.OutlinedButton(
                        t("nodes.bulk_labels"), icon=ft.Icons.SELL_OUTLINED, on_click=self._labels
                    ),
                )
            )
            actions.append(
                ft.Semantics(
                    identifier=ids.NODES_BULK_GROUP,
                    content=ft.OutlinedButton(
                        t("nodes.bulk_group"),
                        icon=ft.Icons.DRIVE_FILE_MOVE_OUTLINE,
                        on_click=self._group,
                    ),
                )
            )
        head = ft.Row(
            [
                ft.Semantics(
                    label=t("nodes.clear_selection"),
                    content=ft.IconButton(
                        ft.Icons.CLOSE, on_click=self._cleared, tooltip=t("nodes.clear_selection")
                    ),
                ),
                ft.Text(
                    t("nodes.selected", n=len(s.selected)),
                    weight=ft.FontWeight.W_600,
                    color=ft.Colors.ON_SECONDARY_CONTAINER,
                ),
            ],
            spacing=4,
            tight=True,
        )
        self.bulk.content = ft.Container(
            ft.Row([head, *actions], spacing=8, wrap=True, run_spacing=4),
            bgcolor=ft.Colors.SECONDARY_CONTAINER,
            border_radius=12,
            padding=ft.Padding.only(left=4, right=12, top=4, bottom=4),
            margin=ft.Margin.only(left=12, right=12, bottom=8),
        )

    def _render_listing(self, force: bool = False) -> list[ft.Control]:
        """Render the list if its rows changed; the controls whose changes are to be sent.

        The table stays mounted (hidden behind the loading, empty or error panel)
        so that showing rows again only sends what changed, not every row.
        """
        s = self.state
        if force:
            self._build_table()
        elif s.rows is self._shown_rows and s.load.phase is self._shown_phase:
            changed: list[ft.Control] = []
            for view in self._row_views.values():  # only the selection may have changed
                selected = view.node_id in s.selected
                if view.check.value != selected:
                    view.check.value = selected
                    changed.append(view.check)
            if self.header_check.value != (s.page_selection is True):
                self.header_check.value = s.page_selection is True
                changed.append(self.header_check)
            return changed
        self._shown_rows, self._shown_phase = s.rows, s.load.phase
        t = self.ctx.i18n.t
        ready = s.load.phase is Phase.READY
        if ready:
            self._bind_rows()
            self.panel.content = None
        else:
            filtered = bool(s.filters.active)
            self.panel.content = state_panels.for_load(
                self.ctx.i18n,
                s.load,
                ft.Container,
                empty_message=t("nodes.empty_filtered") if filtered else t("nodes.empty"),
                retry=s.refresh,
            )
        self.panel.visible = not ready
        self.table.visible = ready
        return [self.listing]

    def _build_table(self) -> None:
        """The table (or card list) and its header, built afresh (layout or language changed)."""
        self._pool = []
        self._rows_list = ft.ListView(
            expand=True,
            padding=ft.Padding.only(left=4, right=8) if self.wide else ft.Padding.only(bottom=12),
            divider_thickness=1 if self.wide else 0,
        )
        self.header_check = ft.Checkbox(on_change=self._page_toggled)
        self._arrows: dict[ListSort, ft.Icon] = {}
        self.table = ft.Column(
            [self._header(), self._rows_list] if self.wide else [self._rows_list],
            spacing=0,
            expand=True,
            visible=False,
        )
        self.panel = ft.Container(expand=True, visible=False)
        self.listing.content = ft.Column([self.panel, self.table], spacing=0, expand=True)
        self._shown_rows = self._shown_phase = None

    def _bind_rows(self) -> None:
        """Show the page's rows, re-binding pooled views.

        Views missing from the pool are built in two steps: the first
        :data:`FIRST_ROWS` now (what a screen shows), the rest right after
        that update went out, so the list is usable sooner.
        """
        rows = self.state.rows
        count = len(rows)
        if len(self._pool) < count:
            count = max(len(self._pool), min(count, FIRST_ROWS))
        self._show_rows(rows, count)
        f = self.state.filters
        for key, arrow in self._arrows.items():
            arrow.visible = f.sort == key
            arrow.icon = ft.Icons.ARROW_UPWARD if f.order == "asc" else ft.Icons.ARROW_DOWNWARD
        if count < len(rows):
            task = asyncio.get_running_loop().create_task(self._grow(rows))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _show_rows(self, rows: list[NodeRow], count: int) -> None:
        while len(self._pool) < count:
            self._pool.append(_RowView(self, self.wide))
        views = self._pool[:count]
        for view, row in zip(views, rows[:count], strict=True):
            view.bind(row)
        self._row_views = {row.id: view for view, row in zip(views, rows, strict=False)}
        self._rows_list.controls = [v.control for v in views]
        self.header_check.value = self.state.page_selection is True

    async def _grow(self, rows: list[NodeRow]) -> None:
        await asyncio.sleep(0)  # after the first rows went out
        if self.state.rows is not rows or self._shown_rows is not rows:
            return
        self._show_rows(rows, len(rows))
        self._push(self._rows_list)

    def _header(self) -> ft.Control:
        t = self.ctx.i18n.t
        cells: list[ft.Control] = []
        for key, width, expand in COLUMNS:
            text = t(f"nodes.col.{key}")
            label: ft.Control = ft.Text(
                text, size=12, weight=ft.FontWeight.W_600, color=ft.Colors.ON_SURFACE_VARIANT
            )
            if key in SORTABLE and SORTABLE[key] in self._sorts():
                sort_key = SORTABLE[key]
                arrow = ft.Icon(ft.Icons.ARROW_UPWARD, size=14, color=ft.Colors.PRIMARY)
                self._arrows[sort_key] = arrow
                label = ft.Semantics(
                    identifier=ids.nodes_sort_by(sort_key),
                    button=True,
                    label=text,
                    content=ft.Container(
                        ft.Row([label, arrow], spacing=2, tight=True),
                        on_click=self._sorter(sort_key),
                        border_radius=4,
                        padding=ft.Padding.symmetric(vertical=4, horizontal=2),
                    ),
                )
            cells.append(_cell(label, width, expand))
        parts: list[ft.Control] = []
        if self.state.can_write or self.state.can_run:
            parts.append(
                ft.Semantics(
                    identifier=ids.NODES_SELECT_ALL,
                    label=t("nodes.select_all"),
                    content=self.header_check,
                )
            )
        parts.append(
            ft.Container(
                ft.Row(cells, spacing=16),
                expand=True,
                padding=ft.Padding.symmetric(horizontal=8),
            )
        )
        return ft.Container(
            ft.Row(parts, spacing=0),
            bgcolor=ft.Colors.SURFACE_CONTAINER,
            padding=ft.Padding.only(left=4, right=8, top=2, bottom=2),
            border=ft.Border.only(bottom=ft.BorderSide(1, ft.Colors.OUTLINE_VARIANT)),
        )

    def _render_pager(self) -> None:
        s = self.state
        t = self.ctx.i18n.t
        if s.total <= s.page_size or s.load.phase is not Phase.READY:
            self.pager.content = None
            return
        first = s.offset + 1
        last = min(s.offset + len(s.rows), s.total)
        self.pager.content = ft.Container(
            ft.Row(
                [
                    ft.Text(
                        t("nodes.range", first=first, last=last, total=s.total),
                        size=12,
                        color=ft.Colors.ON_SURFACE_VARIANT,
                    ),
                    ft.Semantics(
                        identifier=ids.NODES_PAGE_PREVIOUS,
                        label=t("nodes.page_previous"),
                        content=ft.IconButton(
                            ft.Icons.CHEVRON_LEFT,
                            disabled=not s.has_previous,
                            on_click=self._previous,
                            tooltip=t("nodes.page_previous"),
                        ),
                    ),
                    ft.Semantics(
                        identifier=ids.NODES_PAGE_NEXT,
                        label=t("nodes.page_next"),
                        content=ft.IconButton(
                            ft.Icons.CHEVRON_RIGHT,
                            disabled=not s.has_next,
                            on_click=self._next,
                            tooltip=t("nodes.page_next"),
                        ),
                    ),
                ],
                alignment=ft.MainAxisAlignment.END,
                spacing=4,
            ),
            padding=ft.Padding.symmetric(horizontal=12, vertical=2),
            border=ft.Border.only(top=ft.BorderSide(1, ft.Colors.OUTLINE_VARIANT)),
        )

    # --- events -----------------------------------------------------------------------

    def _search_changed(self, e: ft.Event[ft.TextField]) -> None:
        self.state.type_query(e.control.value)

    async def _search_submitted(self, e: ft.Event[ft.TextField]) -> None:
        await self.state.set_query(e.control.value)

    def _selector_changed(self, e: ft.Event[ft.TextField]) -> None:
        self.state.type_selector(e.control.value)

    async def _selector_submitted(self, e: ft.Event[ft.TextField]) -> None:
        await self.state.set_selector(e.control.value)

    async def _status_chosen(self, e: ft.Event[ft.Dropdown]) -> None:
        value = e.control.value
        status: NodeStatus | None = (
            "online" if value == "online" else "offline" if value == "offline" else None
        )
        await self.state.set_status(status)

    async def _group_chosen(self, e: ft.Event[ft.Dropdown]) -> None:
        value = e.control.value
        await self.state.set_group(None if value in (None, ALL) else value)

    async def _sort_chosen(self, e: ft.Event[ft.Dropdown]) -> None:
        value = e.control.value
        for key in SORTS:
            if value == key:
                await self.state.apply(sort=key, order=first_order(key))

    async def _order_flipped(self, _: ft.Event[ft.IconButton]) -> None:
        await self.state.apply(order="desc" if self.state.filters.order == "asc" else "asc")

    def _sorter(self, key: ListSort) -> Callable[[ft.Event[ft.Container]], Any]:
        async def sort(_: ft.Event[ft.Container]) -> None:
            await self.state.sort_by(key)

        return sort

    def _filters_toggled(self, _: ft.Event[ft.IconButton]) -> None:
        self.filters_open = not self.filters_open
        self._render_toolbar()
        self._push()

    async def _filters_cleared(self, _: ft.Event[ft.TextButton]) -> None:
        self.search.value = ""
        self.selector.value = ""
        await self.state.clear_filters()
        self._render_toolbar()
        self._push()

    def _page_toggled(self, e: ft.Event[ft.Checkbox]) -> None:
        self.state.select_page(bool(e.control.value))

    def _cleared(self, _: ft.Event[ft.IconButton]) -> None:
        self.state.clear_selection()

    async def _previous(self, _: ft.Event[ft.IconButton]) -> None:
        await self.state.previous_page()

    async def _next(self, _: ft.Event[ft.IconButton]) -> None:
        await self.state.next_page()

    def _run(self, _: ft.Event[ft.Button]) -> None:
        self.ctx.navigate(self.state.run_route())

    # --- dialogs ----------------------------------------------------------------------

    def _dialog(
        self,
        title: str,
        field: ft.Control,
        apply: Callable[[], Any],
        problem: ft.Text,
    ) -> ft.AlertDialog:
        t = self.ctx.i18n.t

        def cancel(_: ft.Event[ft.TextButton]) -> None:
            self.ctx.page.pop_dialog()
            self.state.dismiss_action_problem()

        async def ok(_: ft.Event[ft.Button]) -> None:
            await apply()

        return ft.AlertDialog(
            modal=True,
            title=ft.Text(title),
            content=ft.Container(ft.Column([field, problem], tight=True, spacing=8), width=420),
            actions=[
                ft.Semantics(
                    identifier=ids.CONFIRM_CANCEL,
                    content=ft.TextButton(t("states.cancel"), on_click=cancel),
                ),
                ft.Semantics(
                    identifier=ids.CONFIRM_OK,
                    content=ft.FilledButton(t("nodes.apply"), on_click=ok),
                ),
            ],
        )

    def _problem_text(self) -> ft.Text:
        return ft.Text("", color=ft.Colors.ERROR, size=12, visible=False, selectable=True)

    def _show_problem(self, text: ft.Text, message: str) -> None:
        text.value = message
        text.visible = True
        text.update()

    def _action_failed(self, text: ft.Text) -> None:
        problem = self.state.action.problem
        if problem is not None:
            self._show_problem(
                text, f"{problem.title}: {problem.detail}" if problem.detail else problem.title
            )

    def _labels(self, _: ft.Event[ft.OutlinedButton]) -> None:
        t = self.ctx.i18n.t
        count = len(self.state.selected)
        field = ft.TextField(
            label=t("nodes.labels_field"),
            hint_text="env=prod, tier=web, -canary",
            helper=t("nodes.labels_help"),
            helper_max_lines=3,
            multiline=True,
            min_lines=1,
            max_lines=4,
            autofocus=True,
        )
        problem = self._problem_text()

        async def apply() -> None:
            try:
                sets, removes = parse_label_changes(field.value)
            except ValueError as bad:
                self._show_problem(problem, t("nodes.labels_invalid", part=str(bad)))
                return
            if await self.state.set_labels(sets, removes):
                self.ctx.page.pop_dialog()
                self.ctx.notify(t("nodes.done_labels", n=count))
            else:
                self._action_failed(problem)

        self.ctx.page.show_dialog(
            self._dialog(t("nodes.labels_title", n=count), field, apply, problem)
        )

    def _group(self, _: ft.Event[ft.OutlinedButton]) -> None:
        t = self.ctx.i18n.t
        count = len(self.state.selected)
        field = ft.Dropdown(
            label=t("nodes.group_field"),
            options=[
                ft.DropdownOption(key=NO_GROUP, text=t("nodes.group.none")),
                *(ft.DropdownOption(key=g["name"], text=g["name"]) for g in self.state.groups),
            ],
            value=NO_GROUP,
            expand=True,
        )
        problem = self._problem_text()

        async def apply() -> None:
            value = field.value
            if await self.state.move_to_group(None if value in (None, NO_GROUP) else value):
                self.ctx.page.pop_dialog()
                self.ctx.notify(t("nodes.done_group", n=count))
            else:
                self._action_failed(problem)

        self.ctx.page.show_dialog(
            self._dialog(t("nodes.group_title", n=count), field, apply, problem)
        )

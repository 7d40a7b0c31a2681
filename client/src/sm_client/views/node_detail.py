"""The node screen (``/nodes/<node_id>``): who the node is, how it is doing, what runs on it.

Thin: it renders :class:`~sm_client.state.node_detail.NodeDetail` and calls its
methods. Sections re-render on their own (a heartbeat redraws the gauges, not
the charts or the log text); text fields are built once so typing survives
live updates. Wide: gauges in a row, charts two by two, facts beside the
header; narrow (a phone): one column, every chart full width.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import flet as ft
import flet_charts as fch  # type: ignore[import-untyped]

from sm_client.api.commands import CommandSummary, ServiceAction
from sm_client.state.node_detail import (
    CHARTS,
    SPANS,
    Chart,
    NodeDetail,
    ServiceJob,
    ServiceRow,
)
from sm_client.state.observable import Phase, Problem
from sm_client.views import ids, state_panels
from sm_client.views.context import RouteParams, ScreenContext
from sm_client.views.styled import mono_text, muted, outlined_card, pill

WIDE: Final = 720  # px of the screen's own width from which sections sit side by side
TABS: Final = ("services", "logs", "executions")
# Services shown at most (a filter narrows a long list).
MAX_UNITS: Final = 150
CHART_HEIGHT: Final = 150
CACHE_EXTENT: Final = 6000  # px above and below the window kept built
LINE_COLORS: Final = (ft.Colors.PRIMARY, ft.Colors.TERTIARY, ft.Colors.SECONDARY)
PERCENT_CHARTS: Final = frozenset({"cpu", "memory", "disk"})
ACTION_ICONS: Final[dict[str, ft.IconData]] = {
    "start": ft.Icons.PLAY_ARROW_ROUNDED,
    "stop": ft.Icons.STOP_ROUNDED,
    "restart": ft.Icons.RESTART_ALT_ROUNDED,
    "status": ft.Icons.INFO_OUTLINE_ROUNDED,
}
KIND_ICONS: Final[dict[str, ft.IconData]] = {
    "shell": ft.Icons.TERMINAL_ROUNDED,
    "service": ft.Icons.SETTINGS_SUGGEST_OUTLINED,
    "logs": ft.Icons.RECEIPT_LONG_OUTLINED,
}


# --- formatting --------------------------------------------------------------------------


def size(value: float | None) -> str:
    """Bytes for people: ``3.8 GiB``."""
    if value is None:
        return "—"
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    amount, unit = float(value), 0
    while amount >= 1024 and unit < len(units) - 1:
        amount, unit = amount / 1024, unit + 1
    return f"{amount:.0f} {units[unit]}" if unit == 0 else f"{amount:.1f} {units[unit]}"


def rate(value: float | None) -> str:
    """Bytes per second: ``12.3 KiB/s``."""
    return "—" if value is None else f"{size(value)}/s"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def moment(at: float | str | None) -> str:
    """``2026-11-28 16:01`` in UTC, from Unix seconds or ISO 8601."""
    if at is None or at == "":
        return "—"
    try:
        when = (
            datetime.fromtimestamp(at, UTC)
            if isinstance(at, int | float)
            else datetime.fromisoformat(at).astimezone(UTC)
        )
    except (ValueError, OverflowError, OSError):
        return str(at)
    return when.strftime("%Y-%m-%d %H:%M")


def level_color(value: float | None) -> str:
    """The bar colour for a percentage: calm until it is high."""
    if value is None or value < 75:
        return ft.Colors.PRIMARY
    return ft.Colors.TERTIARY if value < 90 else ft.Colors.ERROR


def unit_state_colors(active: str) -> tuple[str, str]:
    if active == "active":
        return ft.Colors.PRIMARY_CONTAINER, ft.Colors.ON_PRIMARY_CONTAINER
    if active == "failed":
        return ft.Colors.ERROR_CONTAINER, ft.Colors.ON_ERROR_CONTAINER
    if active in ("activating", "deactivating", "reloading"):
        return ft.Colors.TERTIARY_CONTAINER, ft.Colors.ON_TERTIARY_CONTAINER
    return ft.Colors.SURFACE_CONTAINER_HIGHEST, ft.Colors.ON_SURFACE_VARIANT


def nice_ceiling(value: float) -> float:
    """A round upper bound for an axis holding ``value``."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    base = 10**exponent
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * base:
            return float(step * base)
    return float(10 * base)


# --- the screen --------------------------------------------------------------------------


class NodeScreen:
    """``/nodes/<node_id>``."""

    def __init__(self, ctx: ScreenContext, params: RouteParams) -> None:
        self.ctx = ctx
        self.i18n = ctx.i18n
        self.node_id = params["node_id"]
        self.state = NodeDetail(ctx.api, ctx.feed, self.node_id)
        self.tab = params.get("tab", "services") if params.get("tab") in TABS else "services"
        page_width = float(ctx.page.width or 1440)
        self.width = page_width - (96 if page_width >= 840 else 0)
        self._stops: list[Callable[[], None]] = []
        self._keys: dict[str, object] = {}

        # Inputs built once: typing survives every re-render.
        self.unit_field = ft.TextField(
            dense=True, expand=True, on_submit=self._on_unit_submit, on_change=self._on_unit_change
        )
        self.filter_field = ft.TextField(
            dense=True,
            prefix_icon=ft.Icons.SEARCH,
            on_change=lambda _: self._render_section("tabs", force=True),
        )
        self.source_field = ft.TextField(dense=True, expand=True, on_submit=self._on_show_logs)
        self.lines_field = ft.TextField(
            value="200",
            dense=True,
            width=92,
            keyboard_type=ft.KeyboardType.NUMBER,
            input_filter=ft.InputFilter(regex_string=r"^[0-9]*$", allow=True),
        )

        # The sections card: built once (see _sections).
        self.tabs_row = ft.Container()
        self.refresh_button = ft.IconButton(ft.Icons.REFRESH_ROUNDED, on_click=self._on_list)
        self.refresh_box = ft.Semantics(
            identifier=ids.NODE_SERVICES_REFRESH, content=self.refresh_button
        )
        self.unit_box = ft.Semantics(
            identifier=ids.NODE_SERVICE_UNIT, content=ft.Row([self.unit_field])
        )
        self.unit_buttons = ft.Row(spacing=0, tight=True)
        self.services_toolbar = ft.ResponsiveRow(
            [
                ft.Container(
                    ft.Row(
                        [ft.Container(self.filter_field, expand=True), self.refresh_box],
                        spacing=4,
                    ),
                    col={"xs": 12, "md": 5},
                ),
                ft.Container(
                    ft.Row(
                        [ft.Container(self.unit_box, expand=True), self.unit_buttons], spacing=0
                    ),
                    col={"xs": 12, "md": 7},
                ),
            ],
            spacing=12,
            run_spacing=8,
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )
        self.services_body = ft.Container()
        self.services_view = ft.Column([self.services_toolbar, self.services_body], spacing=6)
        self.source_box = ft.Semantics(
            identifier=ids.NODE_LOGS_SOURCE, content=ft.Row([self.source_field])
        )
        self.lines_box = ft.Semantics(identifier=ids.NODE_LOGS_LINES, content=self.lines_field)
        self.show_button = ft.FilledTonalButton(
            "", icon=ft.Icons.ARTICLE_OUTLINED, on_click=self._on_show_logs
        )
        self.follow_switch = ft.Switch(on_change=self._on_follow)
        self.follow_box = ft.Semantics(identifier=ids.NODE_LOGS_FOLLOW, content=self.follow_switch)
        self.logs_toolbar = ft.ResponsiveRow(
            [
                ft.Container(self.source_box, col={"xs": 12, "md": 6}),
                ft.Container(
                    ft.Row(
                        [
                            self.lines_box,
                            ft.Semantics(identifier=ids.NODE_LOGS_SHOW, content=self.show_button),
                            self.follow_box,
                        ],
                        spacing=8,
                        wrap=True,
                        run_spacing=8,
                    ),
                    col={"xs": 12, "md": 6},
                ),
            ],
            spacing=12,
            run_spacing=8,
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )
        self.logs_body = ft.Container()
        self.logs_status = ft.Container(visible=False)
        self.logs_view = ft.Column(
            [self.logs_toolbar, self.logs_status, self.logs_body],
            spacing=8,
            horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
        )
        self.executions_view = ft.Container()
        self.sections_card = outlined_card(
            ft.Column(
                [
                    self.tabs_row,
                    ft.Divider(height=1),
                    self.services_view,
                    self.logs_view,
                    self.executions_view,
                ],
                spacing=10,
            ),
            padding=12,
        )

        self.header = ft.Container()
        self.gauges = ft.Container()
        self.facts = ft.Container()
        self.trends = ft.Container()
        self.sections = ft.Container()
        # A list whose cache covers the whole screen: every section stays in the
        # accessibility tree even while scrolled out of the window.
        self.body = ft.ListView(
            [self.header, self.gauges, self.trends, self.sections, self.facts],
            spacing=16,
            expand=True,
            cache_extent=CACHE_EXTENT,
        )
        self.root = ft.Semantics(
            identifier=ids.screen("node"),
            content=ft.Container(
                self.body,
                expand=True,
                padding=ft.Padding.symmetric(horizontal=16, vertical=12),
                on_size_change=self._on_size,
                size_change_interval=150,
            ),
        )
        self._render_all()

    # --- Screen ------------------------------------------------------------------------

    def control(self) -> ft.Control:
        return self.root

    async def enter(self) -> None:
        if not self._stops:
            self._stops = [self.state.listen(self._changed), self.i18n.listen(self._relabel)]
        # The services are listed in the background, beside the charts: the screen
        # is usable while systemctl runs on the node.
        await self.state.enter(list_services=True)

    def leave(self) -> None:
        for stop in self._stops:
            stop()
        self._stops = []
        self.state.leave()

    # --- plumbing ------------------------------------------------------------------------

    def t(self, key: str, **values: object) -> str:
        return self.i18n.t(f"node_detail.{key}", **values)

    @property
    def wide(self) -> bool:
        return self.width >= WIDE

    def _on_size(self, e: ft.LayoutSizeChangeEvent[ft.LayoutControl]) -> None:
        wide = self.wide
        self.width = e.width
        if wide != self.wide:
            self._relabel()

    def _relabel(self) -> None:
        self._keys.clear()
        self._changed()

    def _changed(self) -> None:
        for name in ("header", "gauges", "trends", "sections", "facts"):
            self._render_section(name)

    def _render_all(self) -> None:
        self._keys.clear()
        for name in ("header", "gauges", "trends", "sections", "facts"):
            self._render_section(name, push=False)

    def _section_key(self, name: str) -> object:
        s = self.state
        common = (self.i18n.language, self.wide, s.load.phase)
        if name == "header":
            node = s.node
            return (
                *common,
                None if node is None else (node["status"], node["name"]),
                None if node is None else (node["group"], tuple(sorted(node["labels"].items()))),
                s.load.problem,
            )
        if name == "gauges":
            return (*common, s.gauges)
        if name == "facts":
            node = s.node
            disks = s.gauges.disks if s.gauges is not None else ()
            return (*common, None if node is None else node["updated_at"], disks)
        if name == "trends":
            return (*common, s.span, id(s.charts), s.charts_load.phase)
        logs = s.logs
        return (
            *common,
            self.tab,
            s.online,
            s.services_listed,
            s.services_load.phase,
            s.services_load.problem,
            id(s.services),
            tuple((j.unit, j.action, j.running, j.problem, j.output) for j in s.jobs.values()),
            (logs.source, logs.following, len(logs.text), logs.load.phase, logs.load.problem),
            id(s.executions),
            s.executions_load.phase,
            self.filter_field.value,
            (self.unit_field.value or "").strip(),
        )

    def _render_section(self, name: str, *, push: bool = True, force: bool = False) -> None:
        if name == "tabs":
            name = "sections"
        key = self._section_key(name)
        if not force and self._keys.get(name) == key:
            return
        self._keys[name] = key
        container: ft.Container = getattr(self, name)
        container.content = getattr(self, f"_{name}")()
        if push:
            with contextlib.suppress(RuntimeError):  # not on the page (yet, or any more)
                container.update()

    def _spawn(self, coro_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.ctx.page.run_task(coro_fn, *args)

    # --- header ------------------------------------------------------------------------

    def _header(self) -> ft.Control:
        s = self.state
        back = ft.Semantics(
            identifier=ids.NODE_BACK,
            label=self.i18n.t("shell.nav.nodes"),
            content=ft.IconButton(
                ft.Icons.ARROW_BACK_ROUNDED,
                tooltip=self.i18n.t("shell.nav.nodes"),
                on_click=lambda _: self.ctx.navigate("/nodes"),
            ),
        )
        if s.node is None:
            if s.load.phase is Phase.ERROR and s.load.problem is not None:
                panel = state_panels.error(
                    self.i18n, s.load.problem.title, s.load.problem.detail, retry=s.reload
                )
            else:
                panel = state_panels.loading(self.i18n)
            return ft.Column([back, panel], spacing=4)
        node = s.node
        online = node["status"] == "online"
        status = ft.Semantics(
            identifier=ids.NODE_STATUS,
            label=self.t(f"status.{node['status']}"),
            content=pill(
                self.t(f"status.{node['status']}"),
                ft.Colors.PRIMARY_CONTAINER if online else ft.Colors.SURFACE_CONTAINER_HIGHEST,
                ft.Colors.ON_PRIMARY_CONTAINER if online else ft.Colors.ON_SURFACE_VARIANT,
                icon=ft.Icons.CIRCLE if online else ft.Icons.CIRCLE_OUTLINED,
            ),
        )
        title = ft.Semantics(
            identifier=ids.NODE_TITLE,
            label=node["name"],
            content=ft.Text(
                node["name"],
                size=22,
                weight=ft.FontWeight.W_600,
                overflow=ft.TextOverflow.ELLIPSIS,
                max_lines=1,
                selectable=True,
            ),
        )
        seen = (
            self.t("last_seen", when=moment(node["last_seen"]))
            if node["last_seen"]
            else self.t("never_seen")
        )
        subtitle = muted(f"{node['hostname']} · {seen}", size=13)
        tags: list[ft.Control] = [
            pill(
                node["group"] or self.t("no_group"),
                ft.Colors.SECONDARY_CONTAINER,
                ft.Colors.ON_SECONDARY_CONTAINER,
                icon=ft.Icons.WORKSPACES_OUTLINE,
            )
        ]
        for key, value in sorted(node["labels"].items()):
            tags.append(
                pill(
                    f"{key}={value}",
                    ft.Colors.SURFACE_CONTAINER_HIGHEST,
                    ft.Colors.ON_SURFACE,
                    icon=ft.Icons.LABEL_OUTLINE,
                )
            )
        actions: list[ft.Control] = []
        if s.can_write:
            actions.append(
                ft.Semantics(
                    identifier=ids.NODE_EDIT,
                    content=ft.OutlinedButton(
                        self.t("edit"), icon=ft.Icons.EDIT_OUTLINED, on_click=self._on_edit
                    ),
                )
            )
        if s.can_run:
            actions.append(
                ft.Semantics(
                    identifier=ids.NODE_RUN,
                    content=ft.FilledButton(
                        self.t("run"),
                        icon=ft.Icons.TERMINAL_ROUNDED,
                        on_click=lambda _: self.ctx.navigate(f"/commands/new?nodes={self.node_id}"),
                    ),
                )
            )
        rows: list[ft.Control] = [
            ft.Row(
                [
                    back,
                    ft.Column(
                        [ft.Row([title, status], wrap=True, spacing=10), subtitle],
                        spacing=2,
                        expand=True,
                    ),
                ],
                vertical_alignment=ft.CrossAxisAlignment.START,
                spacing=4,
            ),
            ft.Container(
                ft.Row(tags, wrap=True, spacing=6, run_spacing=6), padding=ft.Padding.only(left=8)
            ),
        ]
        if node["duplicate_of"]:
            rows.append(
                ft.Container(
                    ft.Row(
                        [
                            ft.Icon(ft.Icons.WARNING_AMBER_ROUNDED, color=ft.Colors.ERROR),
                            ft.Text(self.t("duplicate", other=node["duplicate_of"]), expand=True),
                        ]
                    ),
                    padding=ft.Padding.only(left=8),
                )
            )
        if actions:
            rows.append(
                ft.Container(
                    ft.Row(actions, wrap=True, spacing=8, run_spacing=8),
                    padding=ft.Padding.only(left=8),
                )
            )
        if not self.ctx.feed.connected:
            rows.append(
                ft.Container(
                    muted(self.i18n.t("states.reconnecting")), padding=ft.Padding.only(left=8)
                )
            )
        return ft.Column(rows, spacing=8)

    # --- gauges ------------------------------------------------------------------------

    def _gauges(self) -> ft.Control:
        s = self.state
        if s.node is None or not s.can_read_metrics:
            return ft.Container()
        g = s.gauges
        if g is None:
            content: ft.Control = outlined_card(
                ft.Row(
                    [
                        ft.Icon(ft.Icons.SENSORS_ROUNDED, color=ft.Colors.ON_SURFACE_VARIANT),
                        muted(self.t("gauges.waiting"), size=13),
                    ]
                )
            )
            return ft.Semantics(
                identifier=ids.NODE_GAUGES, label=self.t("gauges.waiting"), content=content
            )
        load = g.load
        cores = g.cores or (s.node["facts"]["cpu_count"] if s.node else 0)
        tiles = [
            self._tile(
                ft.Icons.MEMORY_ROUNDED,
                self.t("gauge.cpu"),
                percent(g.cpu),
                g.cpu,
                self.t("gauge.cores", n=cores),
            ),
            self._tile(
                ft.Icons.STORAGE_ROUNDED,
                self.t("gauge.memory"),
                percent(g.memory_percent),
                g.memory_percent,
                self.t("gauge.of", used=size(g.memory_used), total=size(g.memory_total)),
            ),
            self._tile(
                ft.Icons.SAVE_OUTLINED,
                self.t("gauge.disk"),
                percent(g.disk_percent),
                g.disk_percent,
                self.t("gauge.of", used=size(g.disk_used), total=size(g.disk_total)),
            ),
            self._tile(
                ft.Icons.SPEED_ROUNDED,
                self.t("gauge.load"),
                "—" if load is None else f"{load[0]:.2f}",
                None if load is None or not cores else min(100.0, load[0] * 100 / cores),
                "—" if load is None else f"{load[1]:.2f} · {load[2]:.2f}",
            ),
            self._tile(
                ft.Icons.SWAP_VERT_ROUNDED,
                self.t("gauge.network"),
                self.t("net.rx", rate=rate(g.rx_bps)),
                None,
                self.t("net.tx", rate=rate(g.tx_bps)),
            ),
            self._tile(
                ft.Icons.SCHEDULE_ROUNDED,
                self.t("gauge.uptime"),
                self._uptime(g.uptime),
                None,
                self.t("gauge.processes", n=int(g.processes or 0)),
            ),
        ]
        label = self.t(
            "gauges.label",
            cpu=percent(g.cpu),
            memory=percent(g.memory_percent),
            disk=percent(g.disk_percent),
        )
        return ft.Semantics(
            identifier=ids.NODE_GAUGES,
            label=label,
            content=ft.ResponsiveRow(tiles, spacing=12, run_spacing=12),
        )

    def _tile(
        self, icon: ft.IconData, title: str, value: str, level: float | None, detail: str
    ) -> ft.Control:
        children: list[ft.Control] = [
            ft.Row(
                [
                    ft.Icon(icon, size=16, color=ft.Colors.ON_SURFACE_VARIANT),
                    muted(title, size=12),
                ],
                spacing=6,
            ),
            ft.Text(value, size=20, weight=ft.FontWeight.W_600, no_wrap=True),
        ]
        children.append(
            ft.ProgressBar(
                value=max(0.0, min(1.0, level / 100)) if level is not None else 0,
                color=level_color(level),
                bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
                bar_height=4,
                border_radius=ft.BorderRadius.all(2),
                opacity=1 if level is not None else 0,
            )
        )
        children.append(muted(detail, size=12))
        return ft.Container(
            outlined_card(ft.Column(children, spacing=6), padding=14),
            col={"xs": 6, "md": 4, "xl": 2},
        )

    def _uptime(self, seconds: float | None) -> str:
        if seconds is None:
            return "—"
        total = int(seconds)
        days, rest = divmod(total, 86400)
        hours, rest = divmod(rest, 3600)
        minutes = rest // 60
        if days:
            return self.t("uptime.days", d=days, h=hours)
        if hours:
            return self.t("uptime.hours", h=hours, m=minutes)
        return self.t("uptime.minutes", m=minutes)

    # --- facts -------------------------------------------------------------------------

    def _facts(self) -> ft.Control:
        s = self.state
        if s.node is None:
            return ft.Container()
        node = s.node
        facts = node["facts"]
        addresses = (
            ", ".join(f"{a['address']} ({a['interface']})" for a in facts["addresses"][:8]) or "—"
        )
        disks = (
            ", ".join(
                f"{mount} {size(used)} / {size(total)}"
                for mount, _, used, total in (s.gauges.disks if s.gauges else ())
            )
            or "—"
        )
        pairs = [
            (self.t("fact.os"), facts["os"] or "—"),
            (self.t("fact.kernel"), f"{facts['kernel']} · {facts['arch']}"),
            (
                self.t("fact.cpu"),
                self.t("fact.cpu_value", model=facts["cpu_model"] or "—", n=facts["cpu_count"]),
            ),
            (self.t("fact.memory"), size(facts["memory_total"])),
            (self.t("fact.disks"), disks),
            (self.t("fact.addresses"), addresses),
            (self.t("fact.agent"), facts["agent_version"]),
            (self.t("fact.hostname"), node["hostname"]),
            (self.t("fact.enrolled"), moment(node["enrolled_at"])),
            (self.t("fact.id"), node["id"]),
        ]
        cells: list[ft.Control] = [
            ft.Container(
                ft.Column(
                    [muted(name, size=12), ft.Text(value, size=13, selectable=True)], spacing=2
                ),
                col={"xs": 12, "sm": 6, "xl": 4},
                padding=ft.Padding.symmetric(vertical=4),
            )
            for name, value in pairs
        ]
        label = "; ".join(f"{name}: {value}" for name, value in pairs)
        return ft.Semantics(
            identifier=ids.NODE_FACTS,
            label=label,
            content=outlined_card(
                ft.Column(
                    [
                        ft.Text(self.t("facts"), size=16, weight=ft.FontWeight.W_600),
                        ft.ResponsiveRow(cells, spacing=16, run_spacing=4),
                    ],
                    spacing=8,
                )
            ),
        )

    # --- trends ------------------------------------------------------------------------

    def _trends(self) -> ft.Control:
        s = self.state
        if s.node is None or not s.can_read_metrics:
            return ft.Container()
        chooser = ft.Row(
            [self._range_button(span) for span in SPANS], spacing=4, wrap=True, run_spacing=4
        )
        head = ft.Row(
            [ft.Text(self.t("trends"), size=16, weight=ft.FontWeight.W_600), chooser],
            alignment=ft.MainAxisAlignment.SPACE_BETWEEN,
            wrap=True,
            run_spacing=8,
        )
        load = s.charts_load
        if load.phase is Phase.LOADING or (load.phase is Phase.ERROR and load.problem):
            body: ft.Control = state_panels.for_load(
                self.i18n, load, ft.Container, retry=s.read_charts
            )
        else:
            body = ft.ResponsiveRow(
                [
                    ft.Container(self._chart(name), col={"xs": 12, "md": 6, "xl": 4})
                    for name in CHARTS
                ],
                spacing=12,
                run_spacing=12,
            )
        return ft.Column([head, body], spacing=10)

    def _range_button(self, span: str) -> ft.Control:
        selected = span == self.state.span
        label = self.t(f"range.{span}")

        async def choose(_: ft.Event[Any]) -> None:
            await self.state.set_span(span)

        button: ft.Control = (
            ft.FilledTonalButton(label, on_click=choose)
            if selected
            else ft.TextButton(label, on_click=choose)
        )
        return ft.Semantics(identifier=ids.node_range(span), selected=selected, content=button)

    def _chart(self, name: str) -> ft.Control:
        chart = self.state.charts.get(name)
        title = self.t(f"chart.{name}")
        points = chart.points if chart is not None else 0
        now_text = self._chart_now(name, chart)
        head = ft.Row(
            [
                ft.Text(title, size=14, weight=ft.FontWeight.W_600),
                muted(now_text, size=12),
            ],
            alignment=ft.MainAxisAlignment.SPACE_BETWEEN,
        )
        legend = self._legend(name) if len(CHARTS[name]) > 1 else None
        if chart is None or not points:
            plot: ft.Control = ft.Container(
                muted(self.t("chart.empty"), size=12),
                height=CHART_HEIGHT,
                alignment=ft.Alignment.CENTER,
            )
        else:
            plot = ft.Container(self._line_chart(name, chart), height=CHART_HEIGHT)
        column: list[ft.Control] = [head, plot]
        if legend is not None:
            column.append(legend)
        return ft.Semantics(
            identifier=ids.node_chart(name),
            label=f"{title} — {now_text} — points: {points}",
            content=outlined_card(ft.Column(column, spacing=8), padding=12),
        )

    def _chart_now(self, name: str, chart: Chart | None) -> str:
        if chart is None:
            return ""
        latest = chart.latest
        if name in PERCENT_CHARTS:
            return percent(latest.get(CHARTS[name][0]))
        if name == "load":
            return " · ".join(f"{latest[m]:.2f}" for m in CHARTS[name] if m in latest)
        return " · ".join(
            (
                self.t("net.rx", rate=rate(latest.get("net_rx_bps"))),
                self.t("net.tx", rate=rate(latest.get("net_tx_bps"))),
            )
        )

    def _legend(self, name: str) -> ft.Control:
        items: list[ft.Control] = []
        for index, metric in enumerate(CHARTS[name]):
            items.append(
                ft.Row(
                    [
                        ft.Container(
                            width=10,
                            height=10,
                            bgcolor=LINE_COLORS[index % len(LINE_COLORS)],
                            border_radius=ft.BorderRadius.all(5),
                        ),
                        muted(self.t(f"line.{metric}"), size=12),
                    ],
                    spacing=4,
                    tight=True,
                )
            )
        return ft.Row(items, spacing=12, wrap=True)

    def _line_chart(self, name: str, chart: Chart) -> fch.LineChart:
        top = 100.0 if name in PERCENT_CHARTS else nice_ceiling(chart.peak * 1.15)
        formatter: Callable[[float], str] = (
            (lambda v: f"{v:.0f}%")
            if name in PERCENT_CHARTS
            else (lambda v: rate(v).replace("/s", ""))
            if name == "network"
            else (lambda v: f"{v:g}")
        )
        series = []
        for index, line in enumerate(chart.lines):
            color = LINE_COLORS[index % len(LINE_COLORS)]
            series.append(
                fch.LineChartData(
                    points=[
                        fch.LineChartDataPoint(x - chart.start, y, tooltip=formatter(y))
                        for x, y in line.points
                    ],
                    color=color,
                    stroke_width=2,
                    curved=True,
                    prevent_curve_over_shooting=True,
                    rounded_stroke_cap=True,
                    point=False,
                    below_line_bgcolor=ft.Colors.with_opacity(0.12, color) if index == 0 else None,
                )
            )
        span = chart.end - chart.start
        stamp = "%H:%M" if span <= 2 * 86400 else "%m-%d"
        bottom = [
            fch.ChartAxisLabel(
                value=offset,
                label=muted(
                    datetime.fromtimestamp(chart.start + offset, UTC).strftime(stamp), size=10
                ),
            )
            for offset in (span * k / 4 for k in (1, 2, 3))
        ]
        left = [
            fch.ChartAxisLabel(value=v, label=muted(formatter(v), size=10))
            for v in (0.0, top / 2, top)
        ]
        return fch.LineChart(
            data_series=series,
            min_x=0,
            max_x=span,
            min_y=0,
            max_y=top,
            interactive=True,
            horizontal_grid_lines=fch.ChartGridLines(
                interval=top / 4, color=ft.Colors.OUTLINE_VARIANT, width=0.5
            ),
            left_axis=fch.ChartAxis(labels=left, label_size=52),
            bottom_axis=fch.ChartAxis(labels=bottom, label_size=20, label_spacing=span / 4),
            border=ft.Border.all(0, ft.Colors.TRANSPARENT),
            animation=ft.Animation(0, ft.AnimationCurve.LINEAR),
            expand=True,
        )

    # --- sections: services, logs, recent commands ---------------------------------------

    def _sections(self) -> ft.Control:
        """The persistent card of the three sections; only what changed is replaced.

        The toolbars (and their text fields) stay the same controls under the
        same parents, so a live update never resets what is being typed.
        """
        s = self.state
        if s.node is None:
            return ft.Container()
        self.tabs_row.content = ft.Row(
            [self._tab_button(name) for name in TABS], spacing=4, wrap=True, run_spacing=4
        )
        self.services_view.visible = self.tab == "services"
        self.logs_view.visible = self.tab == "logs"
        self.executions_view.visible = self.tab == "executions"
        if self.tab == "services":
            self._services()
        elif self.tab == "logs":
            self._logs()
        else:
            self.executions_view.content = self._executions()
        return self.sections_card

    def _tab_button(self, name: str) -> ft.Control:
        selected = name == self.tab
        label = self.t(f"tab.{name}")

        def choose(_: ft.Event[Any]) -> None:
            self.tab = name
            self._render_section("sections")

        color = ft.Colors.PRIMARY if selected else ft.Colors.ON_SURFACE_VARIANT
        return ft.Semantics(
            identifier=ids.node_tab(name),
            selected=selected,
            content=ft.Container(
                ft.TextButton(
                    label,
                    on_click=choose,
                    style=ft.ButtonStyle(
                        color=color,
                        text_style=ft.TextStyle(
                            weight=ft.FontWeight.W_600 if selected else ft.FontWeight.W_400
                        ),
                        shape=ft.RoundedRectangleBorder(radius=6),
                    ),
                ),
                border=ft.Border.only(
                    bottom=ft.BorderSide(2, color if selected else ft.Colors.TRANSPARENT)
                ),
            ),
        )

    # services

    def _services(self) -> None:
        s = self.state
        rows: list[ft.Control] = []
        self.services_toolbar.visible = s.can_run
        if not s.can_run:
            self.services_body.content = ft.Semantics(
                identifier=ids.NODE_SERVICES,
                label=self.t("services.no_scope"),
                content=self._note(ft.Icons.LOCK_OUTLINE, self.t("services.no_scope")),
            )
            return
        self.unit_field.label = self.t("services.unit")
        self.unit_field.hint_text = "nginx.service"
        self.filter_field.hint_text = self.t("services.filter")
        self.refresh_box.label = self.t("services.refresh")
        self.refresh_button.tooltip = self.t("services.refresh")
        self.refresh_button.disabled = s.services_load.phase is Phase.LOADING
        self.unit_box.label = self.t("services.unit")
        typed = (self.unit_field.value or "").strip()
        self.unit_buttons.controls = [
            self._action_button(action, typed, disabled=not typed)
            for action in ("status", "start", "stop", "restart")
        ]
        if not s.online:
            rows.append(self._note(ft.Icons.CLOUD_OFF_ROUNDED, self.t("services.offline")))
        for unit, job in list(s.jobs.items()):
            if not any(row.unit == unit for row in s.services):
                rows.append(self._job_line(job))
        load = s.services_load
        listed: list[str] = []
        if not s.services_listed and load.phase is not Phase.LOADING and load.problem is None:
            rows.append(
                ft.Row(
                    [
                        muted(self.t("services.prompt"), size=13),
                        ft.TextButton(self.t("services.list"), on_click=self._on_list),
                    ],
                    wrap=True,
                )
            )
        elif load.phase is Phase.LOADING:
            rows.append(state_panels.loading(self.i18n))
        elif load.phase is Phase.ERROR and load.problem is not None:
            rows.append(self._problem(load.problem, retry=s.list_services))
        elif load.phase is Phase.EMPTY:
            rows.append(state_panels.empty(self.i18n, self.t("services.empty")))
        else:
            wanted = (self.filter_field.value or "").strip().lower()
            shown = [
                row
                for row in s.services
                if not wanted or wanted in row.unit.lower() or wanted in row.description.lower()
            ]
            rows.append(
                muted(self.t("services.count", n=len(shown), total=len(s.services)), size=12)
            )
            for row in shown[:MAX_UNITS]:
                rows.append(self._unit_row(row))
                listed.append(row.unit)
            if len(shown) > MAX_UNITS:
                rows.append(muted(self.t("services.more", n=len(shown) - MAX_UNITS), size=12))
        if load.phase is Phase.ERROR and load.problem is not None:
            title, detail = self._problem_text(load.problem)
            label = f"{title}: {detail}" if detail else title
        else:
            label = self.t("services.label", n=len(listed)) + (
                ": " + ", ".join(listed) if listed else ""
            )
        self.services_body.content = ft.Semantics(
            identifier=ids.NODE_SERVICES, label=label, content=ft.Column(rows, spacing=6)
        )

    def _unit_row(self, row: ServiceRow) -> ft.Control:
        bg, fg = unit_state_colors(row.active)
        job = self.state.jobs.get(row.unit)
        title = ft.Row(
            [
                ft.Text(
                    row.unit,
                    weight=ft.FontWeight.W_500,
                    size=14,
                    overflow=ft.TextOverflow.ELLIPSIS,
                    max_lines=1,
                    selectable=True,
                ),
                pill(f"{row.active} · {row.sub}", bg, fg),
            ],
            spacing=8,
            wrap=True,
            run_spacing=4,
        )
        info: list[ft.Control] = [title]
        if row.description:
            info.append(
                muted(row.description, size=12)
                if not self.wide
                else ft.Text(
                    row.description,
                    size=12,
                    color=ft.Colors.ON_SURFACE_VARIANT,
                    max_lines=1,
                    overflow=ft.TextOverflow.ELLIPSIS,
                )
            )
        buttons = [self._action_button(action, row.unit) for action in ("start", "stop", "restart")]
        line: list[ft.Control] = [
            ft.Row(
                [ft.Column(info, spacing=2, expand=True), ft.Row(buttons, spacing=0, tight=True)],
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
            )
        ]
        if job is not None:
            line.append(self._job_line(job))
        return ft.Container(
            ft.Column(line, spacing=4),
            padding=ft.Padding.symmetric(horizontal=8, vertical=6),
            border=ft.Border.only(bottom=ft.BorderSide(1, ft.Colors.OUTLINE_VARIANT)),
        )

    def _action_button(self, action: str, unit: str, *, disabled: bool = False) -> ft.Control:
        label = self.t(f"action.{action}")
        job = self.state.jobs.get(unit)
        busy = job is not None and job.running

        async def click(_: ft.Event[ft.IconButton]) -> None:
            target = unit or (self.unit_field.value or "").strip()
            if not target:
                return
            if action == "status":
                await self.state.service_action("status", target)
            else:
                self._confirm(action, target)

        return ft.Semantics(
            identifier=ids.service_action(action, unit),
            label=f"{label} {unit}".strip(),
            content=ft.IconButton(
                ACTION_ICONS[action],
                tooltip=label,
                icon_size=20,
                icon_color=ft.Colors.ERROR if action == "stop" else ft.Colors.PRIMARY,
                on_click=click,
                disabled=disabled or busy,
            ),
        )

    def _job_line(self, job: ServiceJob) -> ft.Control:
        verb = job.action
        if job.running:
            text = self.t("job.running", verb=verb, unit=job.unit)
            content: ft.Control = ft.Row(
                [
                    # A static icon: a spinning ring inside an identified Semantics
                    # drops that node from the browser's accessibility tree.
                    ft.Icon(ft.Icons.HOURGLASS_TOP_ROUNDED, size=16, color=ft.Colors.PRIMARY),
                    muted(text, size=12),
                ],
                spacing=8,
            )
        elif job.problem is not None:
            text = self.t("job.failed", verb=verb, unit=job.unit)
            title, detail = self._problem_text(job.problem)
            text = f"{text} — {title}: {detail}" if detail else f"{text} — {title}"
            content = ft.Row(
                [
                    ft.Icon(ft.Icons.ERROR_OUTLINE, size=16, color=ft.Colors.ERROR),
                    ft.Text(text, size=12, color=ft.Colors.ERROR, selectable=True, expand=True),
                    self._dismiss(job.unit),
                ],
                spacing=8,
            )
        else:
            text = self.t("job.done", verb=verb, unit=job.unit)
            parts: list[ft.Control] = [
                ft.Row(
                    [
                        ft.Icon(ft.Icons.CHECK_CIRCLE_OUTLINE, size=16, color=ft.Colors.PRIMARY),
                        ft.Text(text, size=12, expand=True),
                        self._dismiss(job.unit),
                    ],
                    spacing=8,
                )
            ]
            if job.output:
                parts.append(self._mono(job.output, max_lines=12))
            content = ft.Column(parts, spacing=4)
        return ft.Semantics(
            identifier=ids.NODE_SERVICE_RESULT,
            label=text,
            content=ft.Container(
                content,
                bgcolor=ft.Colors.SURFACE_CONTAINER,
                border_radius=ft.BorderRadius.all(8),
                padding=ft.Padding.symmetric(horizontal=10, vertical=6),
            ),
        )

    def _dismiss(self, unit: str) -> ft.Control:
        return ft.Semantics(
            label=self.t("dismiss"),
            content=ft.IconButton(
                ft.Icons.CLOSE_ROUNDED,
                icon_size=16,
                tooltip=self.t("dismiss"),
                on_click=lambda _: self.state.dismiss(unit),
            ),
        )

    def _confirm(self, action: str, unit: str) -> None:
        node = self.state.node["name"] if self.state.node else self.node_id

        async def ok(_: ft.Event[Any]) -> None:
            self.ctx.page.pop_dialog()
            await self.state.service_action(_as_action(action), unit)

        def cancel(_: ft.Event[ft.TextButton]) -> None:
            self.ctx.page.pop_dialog()

        dialog = ft.AlertDialog(
            modal=True,
            title=ft.Text(self.t(f"confirm.{action}", unit=unit)),
            content=ft.Text(self.t("confirm.body", verb=action, unit=unit, node=node), width=380),
            actions=[
                ft.Semantics(
                    identifier=ids.CONFIRM_CANCEL,
                    content=ft.TextButton(self.i18n.t("states.cancel"), on_click=cancel),
                ),
                ft.Semantics(
                    identifier=ids.CONFIRM_OK,
                    content=ft.FilledButton(
                        self.t(f"action.{action}"),
                        on_click=ok,
                        style=ft.ButtonStyle(
                            bgcolor=ft.Colors.ERROR if action == "stop" else None,
                            color=ft.Colors.ON_ERROR if action == "stop" else None,
                        ),
                    ),
                ),
            ],
        )
        self.ctx.page.show_dialog(dialog)

    # logs

    def _logs(self) -> None:
        s = self.state
        self.logs_toolbar.visible = s.can_run
        if not s.can_run:
            self.logs_body.content = ft.Semantics(
                identifier=ids.NODE_LOGS,
                label=self.t("logs.no_scope"),
                content=self._note(ft.Icons.LOCK_OUTLINE, self.t("logs.no_scope")),
            )
            return
        logs = s.logs
        self.source_field.label = self.t("logs.source")
        self.source_field.hint_text = self.t("logs.source_hint")
        self.source_box.label = self.t("logs.source")
        self.lines_field.label = self.t("logs.lines")
        self.lines_box.label = self.t("logs.lines")
        self.show_button.content = self.t("logs.show")
        self.follow_box.label = self.t("logs.follow")
        self.follow_switch.label = self.t("logs.follow")
        self.follow_switch.value = logs.following
        parts: list[ft.Control] = []
        self.logs_status.visible = logs.following
        self.logs_status.content = ft.Row(
            [
                ft.Icon(ft.Icons.FIBER_MANUAL_RECORD, size=12, color=ft.Colors.ERROR),
                muted(self.t("logs.following", source=logs.source), size=12),
            ],
            spacing=8,
        )
        load = logs.load
        if not logs.source:
            parts.append(muted(self.t("logs.prompt"), size=13))
        elif load.phase is Phase.LOADING and not logs.text:
            parts.append(state_panels.loading(self.i18n))
        elif load.phase is Phase.ERROR and load.problem is not None:
            title, detail = self._problem_text(load.problem)
            parts.append(
                ft.Semantics(
                    identifier=ids.NODE_LOGS_ERROR,
                    label=f"{title}: {detail}" if detail else title,
                    content=self._problem(load.problem),
                )
            )
        if logs.text:
            parts.append(self._log_view(logs.text))
        elif logs.source and load.phase is Phase.EMPTY:
            parts.append(state_panels.empty(self.i18n, self.t("logs.empty")))
        shown = logs.text[-4000:]
        self.logs_body.content = ft.Semantics(
            identifier=ids.NODE_LOGS,
            label=shown or self.t("logs.prompt"),
            content=ft.Column(parts, spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH),
        )

    def _log_view(self, text: str) -> ft.Control:
        lines = text.splitlines()[-1500:]
        return ft.Container(
            ft.Column(
                [
                    mono_text(
                        "\n".join(lines),
                        size=12,
                        selectable=True,
                        no_wrap=False,
                    )
                ],
                scroll=ft.ScrollMode.AUTO,
                auto_scroll=True,
                expand=True,
            ),
            height=380,
            bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
            border_radius=ft.BorderRadius.all(8),
            padding=10,
        )

    def _mono(self, text: str, *, max_lines: int) -> ft.Control:
        lines = text.splitlines()[-max_lines:]
        return ft.Container(
            mono_text(
                "\n".join(lines),
                size=12,
                selectable=True,
            ),
            bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
            border_radius=ft.BorderRadius.all(6),
            padding=8,
        )

    def _lines(self) -> int:
        try:
            return max(0, min(100_000, int(self.lines_field.value or "200")))
        except ValueError:
            return 200

    async def _on_show_logs(self, _: ft.Event[Any]) -> None:
        source = (self.source_field.value or "").strip()
        if source:
            await self.state.read_logs(source, self._lines())

    async def _on_follow(self, e: ft.Event[ft.Switch]) -> None:
        source = (self.source_field.value or "").strip()
        if e.control.value and source:
            await self.state.follow(source, min(self._lines(), 1000))
        elif e.control.value:
            e.control.value = False
            e.control.update()
        else:
            await self.state.stop_follow()

    # recent commands

    def _executions(self) -> ft.Control:
        s = self.state
        if not s.can_read_commands:
            return self._note(ft.Icons.LOCK_OUTLINE, self.t("executions.no_scope"))
        panel = state_panels.for_load(
            self.i18n,
            s.executions_load,
            lambda: ft.Column([self._command_row(c) for c in s.executions], spacing=0),
            empty_message=self.t("executions.empty"),
            retry=s.read_executions,
        )
        return ft.Semantics(
            identifier=ids.NODE_EXECUTIONS,
            label=self.t("executions.label", n=len(s.executions)),
            content=panel,
        )

    def _command_row(self, command: CommandSummary) -> ft.Control:
        what = describe(command)
        counts = command["summary"]
        state = next(
            (
                name
                for name in (
                    "running",
                    "failed",
                    "refused",
                    "timed_out",
                    "expired",
                    "cancelled",
                    "succeeded",
                    "sent",
                    "queued",
                )
                if counts[name]
            ),
            command["status"],
        )
        bg, fg = {
            "succeeded": (ft.Colors.PRIMARY_CONTAINER, ft.Colors.ON_PRIMARY_CONTAINER),
            "running": (ft.Colors.TERTIARY_CONTAINER, ft.Colors.ON_TERTIARY_CONTAINER),
            "sent": (ft.Colors.TERTIARY_CONTAINER, ft.Colors.ON_TERTIARY_CONTAINER),
            "queued": (ft.Colors.TERTIARY_CONTAINER, ft.Colors.ON_TERTIARY_CONTAINER),
        }.get(state, (ft.Colors.ERROR_CONTAINER, ft.Colors.ON_ERROR_CONTAINER))
        if state == "cancelled":
            bg, fg = ft.Colors.SURFACE_CONTAINER_HIGHEST, ft.Colors.ON_SURFACE_VARIANT
        by = self.t("executions.by", actor=command["actor"], when=moment(command["created_at"]))
        return ft.Semantics(
            identifier=ids.node_command(command["id"]),
            label=f"{what} — {self.t('state.' + state)}",
            content=ft.Container(
                ft.Row(
                    [
                        ft.Icon(
                            KIND_ICONS.get(command["kind"], ft.Icons.BOLT),
                            size=20,
                            color=ft.Colors.ON_SURFACE_VARIANT,
                        ),
                        ft.Column(
                            [
                                mono_text(
                                    what,
                                    size=13,
                                    max_lines=1,
                                    overflow=ft.TextOverflow.ELLIPSIS,
                                ),
                                muted(by, size=12),
                            ],
                            spacing=2,
                            expand=True,
                        ),
                        pill(self.t("state." + state), bg, fg),
                        ft.Icon(ft.Icons.CHEVRON_RIGHT_ROUNDED, color=ft.Colors.ON_SURFACE_VARIANT),
                    ],
                    spacing=10,
                ),
                padding=ft.Padding.symmetric(horizontal=8, vertical=8),
                border=ft.Border.only(bottom=ft.BorderSide(1, ft.Colors.OUTLINE_VARIANT)),
                on_click=lambda _: self.ctx.navigate(f"/commands/{command['id']}"),
                ink=True,
            ),
        )

    # --- shared pieces -----------------------------------------------------------------

    def _note(self, icon: ft.IconData, text: str) -> ft.Control:
        return ft.Container(
            ft.Row(
                [
                    ft.Icon(icon, size=18, color=ft.Colors.ON_SURFACE_VARIANT),
                    ft.Text(text, size=13, color=ft.Colors.ON_SURFACE_VARIANT, expand=True),
                ],
                spacing=8,
            ),
            padding=ft.Padding.symmetric(vertical=6),
        )

    def _problem_text(self, problem: Problem) -> tuple[str, str]:
        """A node's refusal in words (``refused: disabled`` → "Not enabled on this node")."""
        title = problem.title
        if title.startswith("refused"):
            code = title.partition(": ")[2]
            key = f"node_detail.refused.{code}" if code else "node_detail.refused"
            text = self.i18n.t(key)
            title = text if text != key else self.t("refused")
        elif title in ("failed", "timed_out", "expired", "cancelled"):
            title = self.t(f"state.{title}")
        return title, problem.detail

    def _problem(
        self, problem: Problem, retry: Callable[[], Awaitable[None]] | None = None
    ) -> ft.Control:
        title, detail = self._problem_text(problem)
        return state_panels.error(self.i18n, title, detail, retry)

    # --- events ------------------------------------------------------------------------

    async def _on_list(self, _: ft.Event[Any]) -> None:
        await self.state.list_services()

    def _on_unit_change(self, _: ft.Event[ft.TextField]) -> None:
        self._render_section("sections")

    async def _on_unit_submit(self, _: ft.Event[ft.TextField]) -> None:
        unit = (self.unit_field.value or "").strip()
        if unit:
            await self.state.service_action("status", unit)

    def _on_edit(self, _: ft.Event[Any]) -> None:
        node = self.state.node
        if node is None:
            return
        labels = ft.TextField(
            label=self.t("edit.labels"),
            value="\n".join(f"{k}={v}" for k, v in sorted(node["labels"].items())),
            multiline=True,
            min_lines=3,
            max_lines=8,
        )
        group = ft.Dropdown(
            label=self.t("edit.group"),
            value=node["group"] or "",
            options=[ft.DropdownOption(key="", text=self.t("edit.none"))],
            expand=True,
        )
        error = ft.Text("", color=ft.Colors.ERROR, size=12, visible=False, selectable=True)
        error_box = ft.Semantics(identifier=ids.NODE_EDIT_ERROR, label="", content=error)

        def fill_groups() -> None:
            names = list(self.state.groups)
            if node["group"] and node["group"] not in names:
                names.append(node["group"])
            group.options = [ft.DropdownOption(key="", text=self.t("edit.none"))] + [
                ft.DropdownOption(key=name, text=name) for name in names
            ]
            with contextlib.suppress(RuntimeError):
                group.update()

        async def load_groups() -> None:
            await self.state.read_groups()
            fill_groups()

        async def save(_: ft.Event[Any]) -> None:
            parsed: dict[str, str] = {}
            for number, raw in enumerate((labels.value or "").splitlines(), start=1):
                line = raw.strip()
                if not line:
                    continue
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    show(self.t("edit.bad_line", n=number))
                    return
                parsed[key.strip()] = value.strip()
            if await self.state.save(labels=parsed, group=group.value or None):
                self.ctx.page.pop_dialog()
                self.ctx.notify(self.t("edit.saved"))
            elif self.state.save_problem is not None:
                problem = self.state.save_problem
                show(f"{problem.title}: {problem.detail}" if problem.detail else problem.title)

        def show(text: str) -> None:
            error.value, error.visible, error_box.label = text, True, text
            with contextlib.suppress(RuntimeError):
                error_box.update()

        dialog = ft.AlertDialog(
            modal=True,
            title=ft.Text(self.t("edit.title", node=node["name"])),
            content=ft.Container(
                ft.Column(
                    [
                        ft.Semantics(identifier=ids.NODE_EDIT_LABELS, content=labels),
                        muted(self.t("edit.hint"), size=12),
                        ft.Semantics(identifier=ids.NODE_EDIT_GROUP, content=ft.Row([group])),
                        error_box,
                    ],
                    tight=True,
                    spacing=10,
                ),
                width=420,
            ),
            actions=[
                ft.Semantics(
                    identifier=ids.CONFIRM_CANCEL,
                    content=ft.TextButton(
                        self.i18n.t("states.cancel"),
                        on_click=lambda _: self.ctx.page.pop_dialog(),
                    ),
                ),
                ft.Semantics(
                    identifier=ids.NODE_EDIT_SAVE,
                    content=ft.FilledButton(self.t("edit.save"), on_click=save),
                ),
            ],
        )
        self.ctx.page.show_dialog(dialog)
        self._spawn(load_groups)


def _as_action(action: str) -> ServiceAction:
    if action == "start":
        return "start"
    if action == "stop":
        return "stop"
    if action == "restart":
        return "restart"
    return "status"


def describe(command: CommandSummary) -> str:
    """One line saying what a command did: its script, service action or log source."""
    if command["kind"] == "shell" and "shell" in command:
        shell = command["shell"]
        text = shell.get("script") or " ".join(shell.get("argv", []))
        return text.strip().splitlines()[0] if text.strip() else "shell"
    if command["kind"] == "service" and "service" in command:
        service = command["service"]
        if service["action"] == "list":
            return "systemctl list-units --type=service"
        return f"systemctl {service['action']} {service.get('unit', '')}".strip()
    if command["kind"] == "logs" and "logs" in command:
        logs = command["logs"]
        source = logs.get("unit") or logs.get("path") or ""
        follow = " -f" if logs.get("follow") else ""
        return f"logs {source} -n {logs.get('lines', 100)}{follow}"
    return command["kind"]

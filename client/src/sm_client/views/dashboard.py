"""The dashboard: the fleet at a glance (counts, CPU and memory, busiest nodes,
latest commands). Renders from :class:`~sm_client.state.dashboard.DashboardState`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

import flet as ft

from sm_client.api.commands import CommandSummary
from sm_client.state.dashboard import DashboardState, TopEntry
from sm_client.state.observable import Load, Phase
from sm_client.views import fleet_format as fmt
from sm_client.views import ids, state_panels
from sm_client.views.context import RouteParams, ScreenContext
from sm_client.views.styled import mono_text, outlined_card

KIND_ICONS: Final = {
    "shell": ft.Icons.TERMINAL,
    "service": ft.Icons.SETTINGS_SUGGEST_OUTLINED,
    "logs": ft.Icons.RECEIPT_LONG_OUTLINED,
}
STATUS_COLORS: Final = {
    "running": ft.Colors.PRIMARY,
    "done": ft.Colors.ON_SURFACE_VARIANT,
    "cancelled": ft.Colors.TERTIARY,
}
FAILED_STATES: Final = ("failed", "timed_out", "expired", "refused")
# Below this window width the card headings' buttons shrink to icons.
NARROW: Final = 600


def command_title(command: CommandSummary) -> str:
    """What a command did, in one line: its script's first line, ``restart nginx``, a log source."""
    if command["kind"] == "shell" and "shell" in command:
        shell = command["shell"]
        text = shell.get("script") or " ".join(shell.get("argv", []))
        lines = [line for line in text.splitlines() if line.strip()]
        return lines[0] if lines else command["kind"]
    if command["kind"] == "service" and "service" in command:
        service = command["service"]
        return f"systemctl {service['action']} {service.get('unit', '')}".strip()
    if command["kind"] == "logs" and "logs" in command:
        logs = command["logs"]
        return logs.get("unit") or logs.get("path") or command["kind"]
    return command["kind"]


def _update(control: ft.Control) -> None:
    """Send ``control``'s changes (nothing to do while it is not on a page)."""
    with contextlib.suppress(RuntimeError):  # "must be added to the page first"
        control.update()


class DashboardScreen:
    def __init__(self, ctx: ScreenContext, params: RouteParams) -> None:
        self.ctx = ctx
        self.state = DashboardState(ctx.api, ctx.feed)
        self.top_by = "cpu"
        self._stops: list[Callable[[], None]] = []
        self._shown: tuple[object, ...] = ()
        self.body = ft.Container(expand=True)
        self.root = ft.Semantics(identifier=ids.screen("dashboard"), content=self.body)
        self.render()

    # --- Screen -----------------------------------------------------------------------

    def control(self) -> ft.Control:
        return self.root

    async def enter(self) -> None:
        self._stops = [self.state.listen(self._refresh), self.ctx.i18n.listen(self._refresh)]
        await self.state.start()

    def leave(self) -> None:
        for stop in self._stops:
            stop()
        self._stops = []
        self.state.stop()

    def _refresh(self) -> None:
        shown = self._signature()
        if shown == self._shown:
            return  # a periodic refresh that changed nothing on screen
        self._shown = shown
        self.render()
        _update(self.root)

    def _signature(self) -> tuple[object, ...]:
        """What the screen shows, to skip re-rendering when none of it changed."""
        s = self.state
        averages = tuple(sorted((s.averages or {}).items()))
        tops = tuple(
            (e.node_id, e.name, fmt.percent(e.cpu), fmt.percent(e.mem_percent))
            for e in s.top_cpu + s.top_memory
        )
        commands = tuple(
            (
                c["id"],
                c["status"],
                tuple(c["summary"].values()),
                fmt.ago(self.ctx.i18n, time.time() - c["created_at"]),
            )
            for c in s.commands
        )
        phases = (s.load.phase, s.metrics_load.phase, s.commands_load.phase)
        return (
            self.ctx.i18n.language,
            self.top_by,
            s.online,
            s.offline,
            averages,
            tops,
            commands,
            phases,
        )

    # --- rendering --------------------------------------------------------------------

    def render(self) -> None:
        s = self.state
        if s.load.phase in (Phase.LOADING, Phase.ERROR) and s.total == 0:
            self.body.content = state_panels.for_load(
                self.ctx.i18n, s.load, lambda: ft.Container(), retry=s.refresh
            )
            return
        stats: list[ft.Control] = [self._online(), self._offline()]
        if s.can_see_metrics:
            stats += [self._cpu(), self._memory()]
        panels: list[ft.Control] = []
        if s.can_see_metrics:
            panels.append(ft.Container(self._top(), col={"xs": 12, "lg": 6}))
        if s.can_see_commands:
            panels.append(ft.Container(self._commands(), col={"xs": 12, "lg": 6}))
        self.body.content = ft.Column(
            [
                ft.ResponsiveRow(stats, spacing=12, run_spacing=12),
                ft.ResponsiveRow(panels, spacing=12, run_spacing=12),
            ],
            spacing=12,
            scroll=ft.ScrollMode.AUTO,
            expand=True,
        )
        self.body.padding = ft.Padding.symmetric(horizontal=16, vertical=12)

    def _stat(
        self,
        identifier: str,
        label: str,
        title: str,
        value: str,
        footer: ft.Control,
        icon: ft.IconData,
        accent: ft.ColorValue,
        on_click: Callable[[ft.Event[ft.Container]], Any] | None = None,
    ) -> ft.Control:
        card = outlined_card(
            ft.Column(
                [
                    ft.Row(
                        [
                            ft.Icon(icon, size=18, color=accent),
                            ft.Text(title, size=13, color=ft.Colors.ON_SURFACE_VARIANT),
                        ],
                        spacing=6,
                    ),
                    ft.Text(value, size=30, weight=ft.FontWeight.W_600),
                    footer,
                ],
                spacing=4,
                tight=True,
            )
        )
        card.height = 132
        card.on_click = on_click
        card.ink = on_click is not None
        return ft.Container(
            ft.Semantics(identifier=identifier, label=label, content=card),
            col={"xs": 6, "md": 3},
        )

    def _online(self) -> ft.Control:
        t = self.ctx.i18n.t
        s = self.state
        return self._stat(
            ids.DASH_ONLINE,
            t("dashboard.online_label", n=s.online),
            t("dashboard.online"),
            str(s.online),
            ft.Text(
                t("dashboard.of_total", n=s.total),
                size=12,
                color=ft.Colors.ON_SURFACE_VARIANT,
            ),
            ft.Icons.CIRCLE,
            fmt.status_color(True),
            self._go("/nodes?status=online"),
        )

    def _offline(self) -> ft.Control:
        t = self.ctx.i18n.t
        s = self.state
        note = t("dashboard.all_online") if s.offline == 0 else t("dashboard.needs_attention")
        return self._stat(
            ids.DASH_OFFLINE,
            t("dashboard.offline_label", n=s.offline),
            t("dashboard.offline"),
            str(s.offline),
            ft.Text(note, size=12, color=ft.Colors.ON_SURFACE_VARIANT),
            ft.Icons.CIRCLE_OUTLINED,
            ft.Colors.ERROR if s.offline else fmt.status_color(False),
            self._go("/nodes?status=offline"),
        )

    def _usage(self, value: float | None, note: str) -> ft.Control:
        return ft.Column(
            [
                ft.ProgressBar(
                    value=0 if value is None else min(1.0, value / 100),
                    bar_height=6,
                    border_radius=3,
                    color=fmt.level(value),
                    bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
                ),
                ft.Text(note, size=12, color=ft.Colors.ON_SURFACE_VARIANT),
            ],
            spacing=6,
            tight=True,
        )

    def _metric_problem(self) -> str | None:
        problem = self.state.metrics_load.problem
        return problem.title if problem is not None else None

    def _cpu(self) -> ft.Control:
        t = self.ctx.i18n.t
        cpu = self.state.averages["cpu"] if self.state.averages else None
        value = fmt.percent(cpu) if cpu is not None else fmt.DASH
        note = self._metric_problem() or (
            t("dashboard.average") if cpu is not None else t("dashboard.no_data")
        )
        return self._stat(
            ids.DASH_CPU,
            t("dashboard.cpu_label", value=value),
            t("dashboard.cpu"),
            value,
            self._usage(cpu, note),
            ft.Icons.MEMORY,
            ft.Colors.PRIMARY,
        )

    def _memory(self) -> ft.Control:
        t = self.ctx.i18n.t
        averages = self.state.averages
        memory = averages["mem_percent"] if averages else None
        disk = averages["disk_percent"] if averages else None
        value = fmt.percent(memory) if memory is not None else fmt.DASH
        note = self._metric_problem() or (
            t("dashboard.disk", value=fmt.percent(disk))
            if disk is not None
            else t("dashboard.no_data")
        )
        return self._stat(
            ids.DASH_MEMORY,
            t("dashboard.memory_label", value=value),
            t("dashboard.memory"),
            value,
            self._usage(memory, note),
            ft.Icons.STORAGE,
            ft.Colors.PRIMARY,
        )

    def _heading(self, text: str, *actions: ft.Control) -> ft.Control:
        return ft.Row(
            [
                ft.Text(text, size=16, weight=ft.FontWeight.W_600),
                ft.Container(expand=True),
                *actions,
            ],
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )

    def _top(self) -> ft.Control:
        t = self.ctx.i18n.t
        s = self.state
        entries = s.top_cpu if self.top_by == "cpu" else s.top_memory
        chooser = ft.SegmentedButton(
            segments=[
                ft.Segment(value="cpu", label=ft.Text(t("dashboard.top_cpu"))),
                ft.Segment(value="memory", label=ft.Text(t("dashboard.top_memory"))),
            ],
            selected=[self.top_by],
            show_selected_icon=False,
            on_change=self._top_chosen,
        )
        body: ft.Control
        if s.metrics_load.phase is Phase.ERROR or (
            s.metrics_load.phase is Phase.LOADING and not entries
        ):
            body = self._panel(s.metrics_load, s.refresh_summary)
        elif not entries:
            body = state_panels.empty(
                self.ctx.i18n, t("dashboard.top_empty"), ft.Icons.CLOUD_OFF_OUTLINED
            )
        else:
            body = ft.Column([self._top_row(e) for e in entries], spacing=2, tight=True)
        label = "; ".join(
            t(
                "dashboard.top_entry",
                name=e.name,
                cpu=fmt.percent(e.cpu),
                memory=fmt.percent(e.mem_percent),
            )
            for e in entries
        )
        return ft.Semantics(
            identifier=ids.DASH_TOP_NODES,
            label=f"{t('dashboard.top_nodes')}: {label}" if label else t("dashboard.top_nodes"),
            content=outlined_card(
                ft.Column(
                    [self._heading(t("dashboard.top_nodes")), chooser, body],
                    spacing=10,
                    tight=True,
                )
            ),
        )

    def _top_row(self, entry: TopEntry) -> ft.Control:
        value = entry.cpu if self.top_by == "cpu" else entry.mem_percent
        other = entry.mem_percent if self.top_by == "cpu" else entry.cpu
        t = self.ctx.i18n.t
        other_label = t("nodes.col.memory") if self.top_by == "cpu" else t("nodes.col.cpu")
        return ft.Container(
            ft.Row(
                [
                    ft.Container(
                        ft.Column(
                            [
                                ft.Text(
                                    entry.name,
                                    weight=ft.FontWeight.W_500,
                                    no_wrap=True,
                                    overflow=ft.TextOverflow.ELLIPSIS,
                                ),
                                ft.Text(
                                    f"{other_label} {fmt.percent(other)}",
                                    size=12,
                                    color=ft.Colors.ON_SURFACE_VARIANT,
                                ),
                            ],
                            spacing=0,
                            tight=True,
                        ),
                        expand=3,
                    ),
                    ft.Container(
                        ft.ProgressBar(
                            value=0 if value is None else min(1.0, value / 100),
                            bar_height=6,
                            border_radius=3,
                            color=fmt.level(value),
                            bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
                        ),
                        expand=2,
                    ),
                    ft.Container(
                        ft.Text(
                            fmt.percent(value),
                            weight=ft.FontWeight.W_600,
                            text_align=ft.TextAlign.RIGHT,
                        ),
                        width=52,
                    ),
                ],
                spacing=12,
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
            ),
            padding=ft.Padding.symmetric(vertical=6, horizontal=8),
            border_radius=8,
            ink=True,
            on_click=self._go(f"/nodes/{entry.node_id}"),
        )

    def _commands(self) -> ft.Control:
        t = self.ctx.i18n.t
        s = self.state
        actions: list[ft.Control] = [
            ft.TextButton(t("dashboard.view_all"), on_click=self._go("/commands"))
        ]
        if s.can_run:
            if (self.ctx.page.width or 0) < NARROW:  # a phone: the heading keeps one line
                actions.append(
                    ft.Semantics(
                        label=t("dashboard.new_command"),
                        content=ft.IconButton(
                            ft.Icons.ADD,
                            tooltip=t("dashboard.new_command"),
                            on_click=self._go("/commands/new"),
                        ),
                    )
                )
            else:
                actions.append(
                    ft.FilledTonalButton(
                        t("dashboard.new_command"),
                        icon=ft.Icons.ADD,
                        on_click=self._go("/commands/new"),
                    )
                )
        body: ft.Control
        if s.commands_load.phase is not Phase.READY:
            body = self._panel(s.commands_load, s.refresh_commands, t("dashboard.commands_empty"))
        else:
            body = ft.Column([self._command_row(c) for c in s.commands], spacing=2, tight=True)
        label = t("dashboard.recent_commands")
        if s.commands:
            label += ": " + "; ".join(command_title(c) for c in s.commands)
        return ft.Semantics(
            identifier=ids.DASH_RECENT_COMMANDS,
            label=label,
            content=outlined_card(
                ft.Column(
                    [
                        self._heading(t("dashboard.recent_commands"), *actions),
                        body,
                    ],
                    spacing=10,
                    tight=True,
                )
            ),
        )

    def _command_row(self, command: CommandSummary) -> ft.Control:
        t = self.ctx.i18n.t
        counts = command["summary"]
        ok = counts["succeeded"]
        failed = sum(counts[state] for state in FAILED_STATES)
        status = command["status"]
        when = fmt.ago(self.ctx.i18n, time.time() - command["created_at"])
        badges: list[ft.Control] = [
            ft.Container(
                ft.Text(
                    t(f"dashboard.status.{status}"),
                    size=11,
                    color=STATUS_COLORS.get(status, ft.Colors.ON_SURFACE_VARIANT),
                    weight=ft.FontWeight.W_600,
                ),
                padding=ft.Padding.symmetric(horizontal=8, vertical=2),
                border_radius=10,
                border=ft.Border.all(1, ft.Colors.OUTLINE_VARIANT),
            )
        ]
        if ok:
            badges.append(
                ft.Text(t("dashboard.command_ok", n=ok), size=11, color=ft.Colors.PRIMARY)
            )
        if failed:
            badges.append(
                ft.Text(t("dashboard.command_failed", n=failed), size=11, color=ft.Colors.ERROR)
            )
        return ft.Container(
            ft.Row(
                [
                    ft.Container(
                        ft.Icon(
                            KIND_ICONS.get(command["kind"], ft.Icons.TERMINAL),
                            size=18,
                            color=ft.Colors.ON_SECONDARY_CONTAINER,
                        ),
                        width=34,
                        height=34,
                        border_radius=17,
                        bgcolor=ft.Colors.SECONDARY_CONTAINER,
                        alignment=ft.Alignment.CENTER,
                    ),
                    ft.Container(
                        ft.Column(
                            [
                                mono_text(
                                    command_title(command),
                                    no_wrap=True,
                                    overflow=ft.TextOverflow.ELLIPSIS,
                                    weight=ft.FontWeight.W_500,
                                ),
                                ft.Text(
                                    " · ".join(
                                        [
                                            command["actor"],
                                            when,
                                            t("dashboard.command_node")
                                            if command["node_count"] == 1
                                            else t(
                                                "dashboard.command_nodes", n=command["node_count"]
                                            ),
                                        ]
                                    ),
                                    size=12,
                                    color=ft.Colors.ON_SURFACE_VARIANT,
                                    no_wrap=True,
                                    overflow=ft.TextOverflow.ELLIPSIS,
                                ),
                            ],
                            spacing=0,
                            tight=True,
                        ),
                        expand=True,
                    ),
                    ft.Column(
                        badges,
                        spacing=2,
                        horizontal_alignment=ft.CrossAxisAlignment.END,
                        tight=True,
                    ),
                ],
                spacing=12,
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
            ),
            padding=ft.Padding.symmetric(vertical=6, horizontal=8),
            border_radius=8,
            ink=True,
            on_click=self._go(f"/commands/{command['id']}"),
        )

    def _panel(self, load: Load, retry: Callable[[], Any], empty: str | None = None) -> ft.Control:
        return state_panels.for_load(
            self.ctx.i18n, load, lambda: ft.Container(), empty_message=empty, retry=retry
        )

    # --- events -----------------------------------------------------------------------

    def _go(self, route: str) -> Callable[[ft.Event[Any]], None]:
        def go(_: ft.Event[Any]) -> None:
            self.ctx.navigate(route)

        return go

    def _top_chosen(self, e: ft.Event[ft.SegmentedButton]) -> None:
        selected = e.control.selected
        self.top_by = selected[0] if selected else "cpu"
        self._refresh()

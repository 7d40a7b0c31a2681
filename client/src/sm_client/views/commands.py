"""``/commands``: the command history (filters, pages), and the other command screens.

The composer (``/commands/new``) is :class:`ComposerScreen` and the live view
of one command (``/commands/<command_id>``) is :class:`CommandRunScreen`;
both are importable from here, where the shell looks for them.
"""

from __future__ import annotations

import asyncio
from typing import Final

import flet as ft

from sm_client.api.commands import CommandSummary
from sm_client.state.commands import CommandsState
from sm_client.views import ids, state_panels
from sm_client.views.command_common import (
    STATE_COLORS,
    ScreenBase,
    chip,
    ended_count,
    spec_text,
    target_text,
    when,
)
from sm_client.views.command_composer import ComposerScreen
from sm_client.views.command_run import CommandRunScreen
from sm_client.views.context import RouteParams, ScreenContext
from sm_client.views.styled import mono_text, muted

__all__ = ["CommandRunScreen", "CommandsScreen", "ComposerScreen"]

REFRESH: Final = 3.0  # seconds between quiet re-reads while shown commands run
KIND_ICONS: Final = {
    "shell": ft.Icons.TERMINAL,
    "service": ft.Icons.SETTINGS_SUGGEST_OUTLINED,
    "logs": ft.Icons.ARTICLE_OUTLINED,
}


class CommandsScreen(ScreenBase):
    """``/commands``: newest first; query ``node_id``, ``kind``, ``status``, ``actor`` filter."""

    name = "commands"

    def __init__(self, ctx: ScreenContext, params: RouteParams) -> None:
        self.state = CommandsState(ctx.api)
        super().__init__(ctx, self.state)
        f = self.state.filters
        f.actor = params.get("actor", "")
        f.node_id = params.get("node_id", "")
        if params.get("kind") in ("shell", "service", "logs"):
            f.kind = params["kind"]  # type: ignore[assignment]
        if params.get("status") in ("running", "done", "cancelled"):
            f.status = params["status"]  # type: ignore[assignment]
        self.actor_field = ft.TextField(
            value=f.actor, dense=True, on_submit=self._on_actor, on_blur=self._on_actor
        )
        self.kind_menu = ft.Dropdown(dense=True, on_select=self._on_kind, expand=True)
        self.status_menu = ft.Dropdown(dense=True, on_select=self._on_status, expand=True)
        self._poller = False
        self.render()

    async def enter(self) -> None:
        self.listen()
        await self.state.refresh()
        if not self._poller:
            self._poller = True
            self.spawn(self._poll)

    def leave(self) -> None:
        self.stop_listening()

    async def _poll(self) -> None:
        try:
            while not self.left:
                await asyncio.sleep(REFRESH)
                if self.state.cursors.index == 0 or self.state.any_running:
                    await self.state.refresh(quiet=True)
        finally:
            self._poller = False

    # --- events -----------------------------------------------------------------------

    async def _on_actor(self, e: ft.Event[ft.TextField]) -> None:
        if self.actor_field.value.strip() != self.state.filters.actor:
            await self.state.set_filters(actor=self.actor_field.value)

    async def _on_kind(self, e: ft.Event[ft.Dropdown]) -> None:
        await self.state.set_filters(kind=self.kind_menu.value or "")

    async def _on_status(self, e: ft.Event[ft.Dropdown]) -> None:
        await self.state.set_filters(status=self.status_menu.value or "")

    async def _on_clear(self, e: ft.Event[ft.TextButton]) -> None:
        self.actor_field.value = ""
        await self.state.clear_filters()

    async def _on_refresh(self, e: ft.Event[ft.IconButton]) -> None:
        await self.state.refresh()

    async def _on_next(self, e: ft.Event[ft.IconButton]) -> None:
        await self.state.next_page()

    async def _on_previous(self, e: ft.Event[ft.IconButton]) -> None:
        await self.state.previous_page()

    def _open(self, command_id: str) -> ft.ControlEventHandler[ft.Container]:
        def go(_: ft.Event[ft.Container]) -> None:
            self.ctx.navigate(f"/commands/{command_id}")

        return go

    def _on_new(self, e: ft.Event[ft.Button]) -> None:
        self.ctx.navigate("/commands/new")

    # --- rendering --------------------------------------------------------------------

    def render(self) -> None:
        t = self.i18n.t
        s = self.state
        any_option = ft.DropdownOption(key="", text=t("commands.filter.any"))
        self.kind_menu.label = t("commands.filter.kind")
        self.kind_menu.options = [any_option] + [
            ft.DropdownOption(key=k, text=t(f"commands.kind.{k}"))
            for k in ("shell", "service", "logs")
        ]
        self.kind_menu.value = s.filters.kind or ""
        self.status_menu.label = t("commands.filter.status")
        self.status_menu.options = [ft.DropdownOption(key="", text=t("commands.filter.any"))] + [
            ft.DropdownOption(key=k, text=t(f"commands.status.{k}"))
            for k in ("running", "done", "cancelled")
        ]
        self.status_menu.value = s.filters.status or ""
        self.actor_field.label = t("commands.filter.actor")

        title = ft.Row(
            [
                ft.Text(t("commands.history"), size=22, weight=ft.FontWeight.W_600, expand=True),
                ft.Semantics(
                    label=t("commands.refresh"),
                    content=ft.IconButton(
                        ft.Icons.REFRESH_ROUNDED,
                        tooltip=t("commands.refresh"),
                        on_click=self._on_refresh,
                    ),
                ),
                ft.Semantics(
                    identifier=ids.COMMANDS_NEW,
                    content=ft.FilledButton(
                        t("commands.new"), icon=ft.Icons.PLAY_ARROW_ROUNDED, on_click=self._on_new
                    ),
                    visible=s.may_run,
                ),
            ],
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )
        filters: list[ft.Control] = [
            ft.Container(self.kind_menu, col={"xs": 6, "md": 3, "xl": 2}),
            ft.Container(self.status_menu, col={"xs": 6, "md": 3, "xl": 2}),
            ft.Container(self.actor_field, col={"xs": 12, "md": 4, "xl": 3}),
        ]
        if s.filters.node_id:
            filters.append(
                ft.Container(
                    chip(
                        f"{t('commands.filter.node')}: {s.filters.node_id[:8]}", ft.Colors.PRIMARY
                    ),
                    col={"xs": 6, "md": 2, "xl": 2},
                )
            )
        if s.filters.active:
            filters.append(
                ft.Container(
                    ft.TextButton(t("commands.filter.clear"), on_click=self._on_clear),
                    col={"xs": 6, "md": 2, "xl": 2},
                )
            )
        filter_row = ft.ResponsiveRow(
            filters, spacing=8, run_spacing=8, vertical_alignment=ft.CrossAxisAlignment.CENTER
        )

        empty = t("commands.empty_filtered") if s.filters.active else t("commands.empty")
        listing = state_panels.for_load(
            self.i18n, s.load, self._rows, empty_message=empty, retry=s.refresh
        )
        pager = ft.Row(
            [
                ft.Semantics(
                    label=t("commands.previous"),
                    content=ft.IconButton(
                        ft.Icons.CHEVRON_LEFT,
                        disabled=not s.cursors.has_previous,
                        on_click=self._on_previous,
                        tooltip=t("commands.previous"),
                    ),
                ),
                muted(t("commands.page", n=s.page_number), size=13),
                ft.Semantics(
                    label=t("commands.next"),
                    content=ft.IconButton(
                        ft.Icons.CHEVRON_RIGHT,
                        disabled=not s.cursors.has_next,
                        on_click=self._on_next,
                        tooltip=t("commands.next"),
                    ),
                ),
            ],
            alignment=ft.MainAxisAlignment.END,
            visible=s.cursors.has_next or s.cursors.has_previous,
        )
        self.body.controls = [
            title,
            filter_row,
            ft.Semantics(identifier=ids.COMMANDS_HISTORY, container=True, content=listing),
            pager,
        ]

    def _rows(self) -> ft.Control:
        rows: list[ft.Control] = []
        if self.wide:
            rows.append(self._header())
        for command in self.state.items:
            rows.append(self._row(command) if self.wide else self._card(command))
        return ft.Column(rows, spacing=4 if self.wide else 8)

    def _header(self) -> ft.Control:
        t = self.i18n.t

        def h(key: str, expand: int) -> ft.Control:
            return ft.Container(muted(t(key), size=12), expand=expand)

        return ft.Container(
            ft.Row(
                [
                    h("commands.col.command", 5),
                    h("commands.col.target", 3),
                    h("commands.col.actor", 2),
                    h("commands.col.created", 2),
                    h("commands.col.progress", 2),
                    h("commands.col.status", 2),
                ],
                spacing=12,
            ),
            padding=ft.Padding.symmetric(horizontal=12, vertical=4),
        )

    def _status(self, command: CommandSummary) -> ft.Control:
        status = command["status"]
        color = STATE_COLORS.get(status, ft.Colors.PRIMARY)
        if status == "done" and (command["summary"]["failed"] or command["summary"]["timed_out"]):
            color = ft.Colors.ERROR
        return chip(self.i18n.t(f"commands.status.{status}"), color)

    def _progress(self, command: CommandSummary) -> ft.Control:
        total = max(1, command["node_count"])
        ended = ended_count(command)
        return ft.Column(
            [
                ft.ProgressBar(value=ended / total, bar_height=4, border_radius=2),
                muted(
                    self.i18n.t("commands.progress", done=ended, total=command["node_count"]),
                    size=11,
                ),
            ],
            spacing=2,
            tight=True,
        )

    def _spec(self, command: CommandSummary) -> ft.Control:
        return ft.Row(
            [
                ft.Icon(
                    KIND_ICONS.get(command["kind"], ft.Icons.TERMINAL),
                    size=16,
                    color=ft.Colors.PRIMARY,
                ),
                mono_text(
                    spec_text(command),
                    size=13,
                    no_wrap=True,
                    overflow=ft.TextOverflow.ELLIPSIS,
                    expand=True,
                ),
            ],
            spacing=6,
        )

    def _row(self, command: CommandSummary) -> ft.Control:
        return ft.Semantics(
            identifier=ids.command_row(command["id"]),
            label=spec_text(command),
            content=ft.Container(
                ft.Row(
                    [
                        ft.Container(self._spec(command), expand=5),
                        ft.Container(
                            ft.Text(
                                target_text(self.i18n, command["target"], command["node_count"]),
                                size=13,
                                no_wrap=True,
                                overflow=ft.TextOverflow.ELLIPSIS,
                            ),
                            expand=3,
                        ),
                        ft.Container(ft.Text(command["actor"], size=13, no_wrap=True), expand=2),
                        ft.Container(muted(when(command["created_at"]), size=12), expand=2),
                        ft.Container(self._progress(command), expand=2),
                        ft.Container(ft.Row([self._status(command)], tight=True), expand=2),
                    ],
                    spacing=12,
                    vertical_alignment=ft.CrossAxisAlignment.CENTER,
                ),
                padding=ft.Padding.symmetric(horizontal=12, vertical=10),
                border_radius=8,
                bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
                on_click=self._open(command["id"]),
                ink=True,
            ),
        )

    def _card(self, command: CommandSummary) -> ft.Control:
        return ft.Semantics(
            identifier=ids.command_row(command["id"]),
            label=spec_text(command),
            content=ft.Container(
                ft.Column(
                    [
                        ft.Row(
                            [ft.Container(self._spec(command), expand=True), self._status(command)]
                        ),
                        muted(
                            target_text(self.i18n, command["target"], command["node_count"]),
                            size=12,
                        ),
                        self._progress(command),
                        muted(f"{command['actor']} · {when(command['created_at'])}", size=12),
                    ],
                    spacing=6,
                    tight=True,
                ),
                padding=12,
                border_radius=12,
                bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
                on_click=self._open(command["id"]),
                ink=True,
            ),
        )

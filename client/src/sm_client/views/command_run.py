"""``/commands/<command_id>``: one command, live — each node's state, exit code and output.

Wide: a table of nodes, each with an expandable output pane (monospace,
selectable, capped height, scrolling inside). Narrow: one card per node.
Cancel (the command, or one node's execution) and run again are offered with
``commands:run`` only. Output arrives many times a second: the view redraws
at most every :data:`FRAME` seconds.
"""

from __future__ import annotations

import asyncio
from typing import Final

import flet as ft

from sm_client.api.commands import Stream
from sm_client.state.command_run import SHOW_CHARS, CommandRunState, ExecutionView
from sm_client.views import ids, state_panels
from sm_client.views.command_common import (
    STATE_COLORS,
    ScreenBase,
    card,
    chip,
    seconds,
    spec_text,
    target_text,
    when,
)
from sm_client.views.context import RouteParams, ScreenContext
from sm_client.views.styled import mono_text, muted

FRAME: Final = 0.15  # seconds: the most often the view redraws
PAGE: Final = 50  # executions shown before "show more"
OPEN_UP_TO: Final = 8  # with this many executions or fewer, every output pane starts open
LABEL_CHARS: Final = 4000  # output characters an output's semantics label carries
STATE_ICONS: Final = {
    "queued": ft.Icons.SCHEDULE,
    "sent": ft.Icons.SEND_OUTLINED,
    "running": ft.Icons.PLAY_CIRCLE_OUTLINE,
    "succeeded": ft.Icons.CHECK_CIRCLE_OUTLINE,
    "failed": ft.Icons.ERROR_OUTLINE,
    "timed_out": ft.Icons.TIMER_OFF_OUTLINED,
    "cancelled": ft.Icons.CANCEL_OUTLINED,
    "expired": ft.Icons.HOURGLASS_DISABLED,
    "refused": ft.Icons.BLOCK,
}


class CommandRunScreen(ScreenBase):
    name = "command"

    def __init__(self, ctx: ScreenContext, params: RouteParams) -> None:
        self.command_id = params["command_id"]
        self.state = CommandRunState(ctx.api, ctx.feed, self.command_id)
        super().__init__(ctx, self.state)
        self.open: set[str] = set()
        self.closed: set[str] = set()
        self.shown = PAGE
        self._pending = False
        self.render()

    async def enter(self) -> None:
        self._stops = [self.state.listen(self._soon), self.i18n.listen(self.refresh)]
        self._left = False
        await self.state.start()

    def leave(self) -> None:
        self.stop_listening()
        self.state.stop()

    def _soon(self) -> None:
        """Redraw within :data:`FRAME` (output chunks come in bursts)."""
        if self._pending or self._left:
            return
        self._pending = True
        self.spawn(self._draw_later)

    async def _draw_later(self) -> None:
        await asyncio.sleep(FRAME)
        self._pending = False
        if not self._left:
            self.refresh()

    # --- events -----------------------------------------------------------------------

    def _toggle(self, view: ExecutionView) -> ft.ControlEventHandler[ft.TextButton]:
        def toggle(_: ft.Event[ft.TextButton]) -> None:
            if self._is_open(view):
                self.open.discard(view.id)
                self.closed.add(view.id)
            else:
                self.closed.discard(view.id)
                self.open.add(view.id)
            self.refresh()

        return toggle

    def _is_open(self, view: ExecutionView) -> bool:
        if view.id in self.closed:
            return False
        return view.id in self.open or len(self.state.executions) <= OPEN_UP_TO

    def _confirm(self, title: str, body: str, work: object) -> None:
        t = self.i18n.t

        def close(_: ft.Event[ft.TextButton]) -> None:
            self.ctx.page.pop_dialog()

        async def ok(_: ft.Event[ft.Button]) -> None:
            self.ctx.page.pop_dialog()
            done = await work()  # type: ignore[operator]
            if done:
                self.ctx.notify(t("commands.run.cancel_sent"))

        self.ctx.page.show_dialog(
            ft.AlertDialog(
                modal=True,
                title=ft.Text(title),
                content=ft.Text(body, width=380),
                actions=[
                    ft.Semantics(
                        identifier=ids.CONFIRM_CANCEL,
                        content=ft.TextButton(t("commands.run.confirm_no"), on_click=close),
                    ),
                    ft.Semantics(
                        identifier=ids.CONFIRM_OK,
                        content=ft.FilledButton(
                            t("commands.run.confirm_yes"),
                            on_click=ok,
                            style=ft.ButtonStyle(bgcolor=ft.Colors.ERROR, color=ft.Colors.ON_ERROR),
                        ),
                    ),
                ],
            )
        )

    def _on_cancel(self, _: ft.Event[ft.OutlinedButton]) -> None:
        t = self.i18n.t
        self._confirm(
            t("commands.run.confirm_title"), t("commands.run.confirm_body"), self.state.cancel
        )

    def _cancel_one(self, view: ExecutionView) -> ft.ControlEventHandler[ft.IconButton]:
        def cancel(_: ft.Event[ft.IconButton]) -> None:
            t = self.i18n.t

            async def work() -> bool:
                return await self.state.cancel_execution(view.id)

            self._confirm(
                t("commands.run.confirm_one_title", node=view.name),
                t("commands.run.confirm_one_body"),
                work,
            )

        return cancel

    async def _rerun(self, failed_only: bool) -> None:
        again = await self.state.rerun(failed_only=failed_only)
        if again is not None:
            self.ctx.navigate(f"/commands/{again}")

    async def _on_rerun(self, _: ft.Event[ft.OutlinedButton]) -> None:
        await self._rerun(False)

    async def _on_rerun_failed(self, _: ft.Event[ft.OutlinedButton]) -> None:
        await self._rerun(True)

    def _on_more(self, _: ft.Event[ft.TextButton]) -> None:
        self.shown += PAGE
        self.refresh()

    # --- rendering --------------------------------------------------------------------

    def render(self) -> None:
        s = self.state
        back = ft.Row(
            [
                ft.IconButton(
                    ft.Icons.ARROW_BACK,
                    on_click=lambda _: self.ctx.navigate("/commands"),
                    tooltip=self.i18n.t("commands.run.back"),
                ),
                ft.Text(self.i18n.t("commands.run.title"), size=22, weight=ft.FontWeight.W_600),
                muted(self.command_id, mono=True, selectable=True),
            ],
            spacing=6,
            wrap=True,
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )
        content = state_panels.for_load(self.i18n, s.load, self._ready, retry=s.sync)
        self.body.controls = [back, content]

    def _summary(self) -> str:
        counts = self.state.counts()
        total = len(self.state.executions)
        running = counts["queued"] + counts["sent"] + counts["running"]
        ok = counts["succeeded"]
        return self.i18n.t(
            "commands.run.summary",
            ended=total - running,
            total=total,
            ok=ok,
            bad=total - running - ok,
        )

    def _ready(self) -> ft.Control:
        s = self.state
        t = self.i18n.t
        command = s.command
        assert command is not None
        counts = s.counts()
        total = max(1, len(s.executions))
        ended = total - (counts["queued"] + counts["sent"] + counts["running"])
        status = "running" if s.running else ("cancelled" if command["cancelled_at"] else "done")
        color = STATE_COLORS.get(status, ft.Colors.PRIMARY)
        if status == "done" and ended != counts["succeeded"]:
            color = ft.Colors.ERROR
        live = s.feed.connected
        indicator = ft.Row(
            [
                ft.Container(
                    width=8,
                    height=8,
                    border_radius=4,
                    bgcolor=ft.Colors.GREEN if live else ft.Colors.AMBER,
                ),
                muted(t("commands.run.live") if live else t("commands.run.polling")),
            ],
            spacing=6,
            tight=True,
            visible=s.running,
        )
        actions: list[ft.Control] = []
        if s.may_run:
            if s.running:
                actions.append(
                    ft.Semantics(
                        identifier=ids.COMMAND_CANCEL,
                        content=ft.OutlinedButton(
                            t("commands.run.cancel"),
                            icon=ft.Icons.STOP_CIRCLE_OUTLINED,
                            on_click=self._on_cancel,
                            disabled=s.busy,
                            style=ft.ButtonStyle(color=ft.Colors.ERROR),
                        ),
                    )
                )
            else:
                actions.append(
                    ft.OutlinedButton(
                        t("commands.run.rerun"),
                        icon=ft.Icons.REPLAY,
                        on_click=self._on_rerun,
                        disabled=s.busy,
                    )
                )
                if counts["succeeded"] < len(s.executions):
                    actions.append(
                        ft.OutlinedButton(
                            t("commands.run.rerun_failed"),
                            icon=ft.Icons.RESTART_ALT,
                            on_click=self._on_rerun_failed,
                            disabled=s.busy,
                        )
                    )
        meta: list[ft.Control] = [
            muted(t("commands.run.by", actor=command["actor"], when=when(command["created_at"]))),
            muted(target_text(self.i18n, command["target"], command["node_count"])),
        ]
        if command["rerun_of"]:
            meta.append(muted(t("commands.run.rerun_of", id=command["rerun_of"]), mono=True))
        if command["note"]:
            meta.append(ft.Text(command["note"], size=13, italic=True))
        problem: list[ft.Control] = []
        if s.problem is not None:
            problem.append(
                ft.Container(
                    ft.Text(
                        f"{t('commands.run.action_failed')}: {s.problem.title} {s.problem.detail}",
                        color=ft.Colors.ON_ERROR_CONTAINER,
                        selectable=True,
                        size=13,
                    ),
                    bgcolor=ft.Colors.ERROR_CONTAINER,
                    padding=10,
                    border_radius=8,
                )
            )
        header = card(
            ft.Column(
                [
                    ft.Row(
                        [
                            chip(
                                self.i18n.t(f"commands.kind.{command['kind']}"), ft.Colors.PRIMARY
                            ),
                            mono_text(
                                spec_text(command),
                                size=15,
                                selectable=True,
                                expand=True,
                            ),
                        ],
                        vertical_alignment=ft.CrossAxisAlignment.CENTER,
                    ),
                    ft.Row(meta, wrap=True, spacing=16),
                    ft.Row(
                        [
                            chip(t(f"commands.status.{status}"), color),
                            ft.Semantics(
                                identifier=ids.COMMAND_STATE,
                                label=self._summary(),
                                content=ft.Text(self._summary(), size=13),
                            ),
                            indicator,
                        ],
                        wrap=True,
                        spacing=12,
                        vertical_alignment=ft.CrossAxisAlignment.CENTER,
                    ),
                    ft.ProgressBar(value=ended / total, bar_height=6, border_radius=3, color=color),
                    ft.Row(actions, wrap=True, spacing=8),
                    *problem,
                ],
                spacing=10,
                tight=True,
            )
        )
        shown = s.executions[: self.shown]
        rows: list[ft.Control] = []
        if self.wide:
            rows.append(self._table_header())
        for view in shown:
            rows.append(self._row(view) if self.wide else self._card(view))
        if len(s.executions) > len(shown):
            rows.append(
                ft.TextButton(
                    t("commands.run.show_more", n=min(PAGE, len(s.executions) - len(shown))),
                    on_click=self._on_more,
                )
            )
        return ft.Column([header, ft.Column(rows, spacing=6)], spacing=12)

    # executions

    def _state_text(self, view: ExecutionView) -> str:
        text = self.i18n.t(f"commands.state.{view.state}")
        if view.exit_code is not None:
            text += " · " + self.i18n.t("commands.run.exit_code", code=view.exit_code)
        return text

    def _state_chip(self, view: ExecutionView) -> ft.Control:
        color = STATE_COLORS.get(view.state, ft.Colors.PRIMARY)
        return ft.Semantics(
            identifier=ids.execution_row(view.node_id),
            label=f"{view.name}: {self._state_text(view)}",
            content=chip(
                self.i18n.t(f"commands.state.{view.state}"), color, icon=STATE_ICONS.get(view.state)
            ),
        )

    def _exit(self, view: ExecutionView) -> ft.Control:
        if view.exit_code is None:
            return muted("—", size=13)
        return mono_text(
            str(view.exit_code),
            size=13,
            weight=ft.FontWeight.W_600,
            color=ft.Colors.GREEN if view.exit_code == 0 else ft.Colors.ERROR,
        )

    def _row_actions(self, view: ExecutionView) -> list[ft.Control]:
        t = self.i18n.t
        opened = self._is_open(view)
        out: list[ft.Control] = [
            ft.TextButton(
                t("commands.run.hide_output") if opened else t("commands.run.show_output"),
                icon=ft.Icons.EXPAND_LESS if opened else ft.Icons.EXPAND_MORE,
                on_click=self._toggle(view),
            )
        ]
        if self.state.may_run and not view.ended:
            out.append(
                ft.Semantics(
                    label=t("commands.run.cancel_one"),
                    content=ft.IconButton(
                        ft.Icons.STOP_CIRCLE_OUTLINED,
                        icon_color=ft.Colors.ERROR,
                        tooltip=t("commands.run.cancel_one"),
                        on_click=self._cancel_one(view),
                        disabled=self.state.busy,
                    ),
                )
            )
        return out

    def _table_header(self) -> ft.Control:
        t = self.i18n.t
        return ft.Container(
            ft.Row(
                [
                    ft.Container(muted(t("commands.run.node")), expand=4),
                    ft.Container(muted(t("commands.run.state")), expand=3),
                    ft.Container(muted(t("commands.run.exit")), expand=1),
                    ft.Container(muted(t("commands.run.duration")), expand=2),
                    ft.Container(muted(t("commands.run.output")), expand=3),
                ],
                spacing=12,
            ),
            padding=ft.Padding.symmetric(horizontal=12, vertical=2),
        )

    def _row(self, view: ExecutionView) -> ft.Control:
        line = ft.Row(
            [
                ft.Container(
                    ft.Text(
                        view.name,
                        size=14,
                        weight=ft.FontWeight.W_500,
                        no_wrap=True,
                        overflow=ft.TextOverflow.ELLIPSIS,
                    ),
                    expand=4,
                ),
                ft.Container(ft.Row([self._state_chip(view)], tight=True), expand=3),
                ft.Container(self._exit(view), expand=1),
                ft.Container(muted(seconds(view.duration), size=13), expand=2),
                ft.Container(ft.Row(self._row_actions(view), spacing=0, tight=True), expand=3),
            ],
            spacing=12,
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )
        parts: list[ft.Control] = [line, *self._notes(view)]
        if self._is_open(view):
            parts.append(self._output(view))
        return ft.Container(
            ft.Column(
                parts, spacing=8, tight=True, horizontal_alignment=ft.CrossAxisAlignment.STRETCH
            ),
            padding=ft.Padding.symmetric(horizontal=12, vertical=8),
            border_radius=8,
            bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
        )

    def _card(self, view: ExecutionView) -> ft.Control:
        t = self.i18n.t
        parts: list[ft.Control] = [
            ft.Row(
                [
                    ft.Text(
                        view.name,
                        size=15,
                        weight=ft.FontWeight.W_600,
                        expand=True,
                        no_wrap=True,
                        overflow=ft.TextOverflow.ELLIPSIS,
                    ),
                    self._state_chip(view),
                ],
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
            ),
            ft.Row(
                [
                    muted(t("commands.run.exit"), size=12),
                    self._exit(view),
                    muted(t("commands.run.duration"), size=12),
                    muted(seconds(view.duration), size=12),
                ],
                spacing=8,
                wrap=True,
            ),
            *self._notes(view),
            ft.Row(self._row_actions(view), spacing=0, wrap=True),
        ]
        if self._is_open(view):
            parts.append(self._output(view))
        return ft.Container(
            ft.Column(
                parts, spacing=6, tight=True, horizontal_alignment=ft.CrossAxisAlignment.STRETCH
            ),
            padding=12,
            border_radius=12,
            bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
        )

    def _notes(self, view: ExecutionView) -> list[ft.Control]:
        t = self.i18n.t
        notes: list[ft.Control] = []
        if view.reason:
            notes.append(
                ft.Text(
                    t("commands.run.reason", reason=view.reason),
                    size=12,
                    color=ft.Colors.ORANGE,
                    selectable=True,
                )
            )
        if view.error:
            notes.append(
                ft.Text(
                    t("commands.run.error", error=view.error),
                    size=12,
                    color=ft.Colors.ERROR,
                    selectable=True,
                )
            )
        return notes

    def _stream(self, view: ExecutionView, stream: Stream) -> ft.Control | None:
        text = view.text(stream)
        if not text:
            return None
        label_color = ft.Colors.ERROR if stream == "stderr" else ft.Colors.ON_SURFACE_VARIANT
        parts: list[ft.Control] = [
            ft.Text(
                self.i18n.t(f"commands.run.{stream}"),
                size=11,
                color=label_color,
                weight=ft.FontWeight.W_600,
            ),
        ]
        if view.clipped(stream):
            parts.append(muted(self.i18n.t("commands.run.clipped", n=SHOW_CHARS // 1024), size=11))
        parts.append(
            mono_text(
                text.rstrip("\n"),
                size=12,
                selectable=True,
                color=ft.Colors.ERROR if stream == "stderr" else None,
            )
        )
        return ft.Column(parts, spacing=2, tight=True)

    def _output(self, view: ExecutionView) -> ft.Control:
        t = self.i18n.t
        streams = [
            c for c in (self._stream(view, "stdout"), self._stream(view, "stderr")) if c is not None
        ]
        if not streams:
            streams = [
                muted(
                    t("commands.run.no_output") if view.ended else t("commands.run.waiting"),
                    size=12,
                )
            ]
        if view.truncated:
            streams.append(muted(t("commands.run.truncated"), size=11))
        label = view.text("stdout", LABEL_CHARS)
        if view.stderr:
            label += view.text("stderr", LABEL_CHARS)
        return ft.Semantics(
            identifier=ids.execution_output(view.node_id),
            label=label
            or (t("commands.run.no_output") if view.ended else t("commands.run.waiting")),
            content=ft.Container(
                ft.Column(
                    streams, spacing=8, scroll=ft.ScrollMode.AUTO, auto_scroll=not view.ended
                ),
                bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
                border_radius=8,
                padding=10,
                height=min(320, 40 + 17 * max(1, _lines(view))),
            ),
        )


def _lines(view: ExecutionView) -> int:
    return view.stdout.count(b"\n") + view.stderr.count(b"\n") + (2 if view.stderr else 0) + 1

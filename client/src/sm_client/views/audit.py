"""``/audit``: the hash-chained audit log — filters, pages, each record's detail, and verify.

Wide: table rows (seq, time, actor, action, target, what); narrow: cards. A
record opens to show its full detail and its hashes. Verify asks the core to
check the whole chain and shows the verdict (``ok``, or the first bad record).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import flet as ft

from sm_client.api.commands import AuditRecord
from sm_client.state.audit import ACTIONS, WINDOWS, AuditState
from sm_client.views import ids, state_panels
from sm_client.views.command_common import ScreenBase, card, chip, spec_text, when
from sm_client.views.context import RouteParams, ScreenContext
from sm_client.views.styled import mono_style, mono_text, muted

ACTION_COLORS = {
    "command": ft.Colors.PRIMARY,
    "execution": ft.Colors.TERTIARY,
    "node": ft.Colors.SECONDARY,
}


class AuditScreen(ScreenBase):
    name = "audit"

    def __init__(self, ctx: ScreenContext, params: RouteParams) -> None:
        self.state = AuditState(ctx.api)
        super().__init__(ctx, self.state)
        f = self.state.filters
        f.actor = params.get("actor", "")
        f.action = params.get("action", "")
        f.target = params.get("target", "")
        self.actor = ft.TextField(value=f.actor, dense=True, on_submit=self._apply)
        self.target = ft.TextField(
            value=f.target,
            dense=True,
            on_submit=self._apply,
            text_style=mono_style(),
        )
        self.action = ft.Dropdown(
            dense=True, on_select=self._apply, editable=True, enable_filter=True
        )
        self.window = ft.Dropdown(dense=True, on_select=self._apply, expand=True)
        self.opened: set[int] = set()
        self.render()

    async def enter(self) -> None:
        self.listen()
        await self.state.refresh()

    def leave(self) -> None:
        self.stop_listening()

    # --- events -----------------------------------------------------------------------

    async def _apply(self, _: ft.Event[Any]) -> None:
        await self.state.set_filters(
            actor=self.actor.value,
            action=self.action.value or "",
            target=self.target.value,
            window=self.window.value or "",
        )

    async def _on_clear(self, _: ft.Event[ft.TextButton]) -> None:
        self.actor.value = ""
        self.target.value = ""
        self.action.value = ""
        self.window.value = ""
        await self.state.clear_filters()

    async def _on_verify(self, _: ft.Event[ft.Button]) -> None:
        await self.state.verify()

    async def _on_refresh(self, _: ft.Event[ft.IconButton]) -> None:
        await self.state.refresh()

    async def _on_next(self, _: ft.Event[ft.IconButton]) -> None:
        await self.state.next_page()

    async def _on_previous(self, _: ft.Event[ft.IconButton]) -> None:
        await self.state.previous_page()

    def _toggle(self, seq: int) -> ft.ControlEventHandler[ft.Container]:
        def toggle(_: ft.Event[ft.Container]) -> None:
            self.opened.symmetric_difference_update({seq})
            self.refresh()

        return toggle

    # --- rendering --------------------------------------------------------------------

    def t(self, key: str, **values: object) -> str:
        return self.i18n.t(f"audit.{key}", **values)

    def render(self) -> None:
        s = self.state
        self.actor.label = self.t("filter.actor")
        self.target.label = self.t("filter.target")
        self.target.hint_text = self.t("filter.target_help")
        self.action.label = self.t("filter.action")
        self.action.options = [
            ft.DropdownOption(key="", text=self.i18n.t("commands.filter.any"))
        ] + [ft.DropdownOption(key=a, text=a) for a in ACTIONS]
        self.action.value = s.filters.action
        self.action.error_text = self.i18n.t(s.filter_error) if s.filter_error else None
        self.window.label = self.t("filter.window")
        self.window.options = [
            ft.DropdownOption(key=k, text=self.t(f"window.{k or 'all'}")) for k in WINDOWS
        ]
        self.window.value = s.filters.window

        title = ft.Row(
            [
                ft.Column(
                    [
                        ft.Text(self.t("title"), size=22, weight=ft.FontWeight.W_600),
                        muted(self.t("subtitle"), size=13),
                    ],
                    spacing=2,
                    tight=True,
                    expand=True,
                ),
                ft.Semantics(
                    label=self.t("refresh"),
                    content=ft.IconButton(
                        ft.Icons.REFRESH_ROUNDED,
                        tooltip=self.t("refresh"),
                        on_click=self._on_refresh,
                    ),
                ),
            ],
            vertical_alignment=ft.CrossAxisAlignment.START,
        )
        filters: list[ft.Control] = [
            ft.Semantics(
                identifier=ids.AUDIT_FILTER_ACTION,
                content=self.action,
                col={"xs": 12, "sm": 6, "md": 3, "xl": 2},
            ),
            ft.Semantics(
                identifier=ids.AUDIT_FILTER_ACTOR,
                content=self.actor,
                col={"xs": 6, "md": 2, "xl": 2},
            ),
            ft.Container(self.window, col={"xs": 6, "md": 2, "xl": 2}),
            ft.Container(self.target, col={"xs": 12, "md": 5, "xl": 3}),
            ft.Container(
                ft.Row(
                    [
                        ft.FilledTonalButton(
                            self.t("filter.apply"), icon=ft.Icons.FILTER_LIST, on_click=self._apply
                        ),
                        ft.TextButton(
                            self.t("filter.clear"),
                            on_click=self._on_clear,
                            visible=s.filters.active,
                        ),
                    ],
                    spacing=4,
                ),
                col={"xs": 12, "md": 12, "xl": 3},
            ),
        ]
        empty = self.t("empty_filtered") if s.filters.active else self.t("empty")
        listing = state_panels.for_load(
            self.i18n, s.load, self._rows, empty_message=empty, retry=s.refresh
        )
        pager = ft.Row(
            [
                ft.Semantics(
                    label=self.t("previous"),
                    content=ft.IconButton(
                        ft.Icons.CHEVRON_LEFT,
                        disabled=not s.cursors.has_previous,
                        on_click=self._on_previous,
                    ),
                ),
                muted(self.t("page", n=s.page_number), size=13),
                ft.Semantics(
                    label=self.t("next"),
                    content=ft.IconButton(
                        ft.Icons.CHEVRON_RIGHT,
                        disabled=not s.cursors.has_next,
                        on_click=self._on_next,
                    ),
                ),
            ],
            alignment=ft.MainAxisAlignment.END,
            visible=s.cursors.has_next or s.cursors.has_previous,
        )
        self.body.controls = [
            title,
            self._verify(),
            ft.ResponsiveRow(
                filters, spacing=8, run_spacing=8, vertical_alignment=ft.CrossAxisAlignment.CENTER
            ),
            ft.Semantics(identifier=ids.AUDIT_LIST, container=True, content=listing),
            pager,
        ]

    def _verify(self) -> ft.Control:
        s = self.state
        result: ft.Control
        if s.verifying:
            text = self.t("verifying")
            result = ft.Row(
                [ft.ProgressRing(width=16, height=16, stroke_width=2), ft.Text(text)],
                spacing=8,
                tight=True,
            )
        elif s.verify_problem is not None:
            text = f"{self.t('verify_failed')}: {s.verify_problem.title} {s.verify_problem.detail}".strip()
            result = ft.Row(
                [
                    ft.Icon(ft.Icons.ERROR_OUTLINE, color=ft.Colors.ERROR),
                    ft.Text(text, color=ft.Colors.ERROR, selectable=True, expand=True),
                ],
                spacing=8,
            )
        elif s.verdict is not None:
            verdict = s.verdict
            if verdict["ok"]:
                text = (
                    self.t("verify_ok", n=verdict["records"])
                    if verdict["records"]
                    else self.t("verify_ok_empty")
                )
                icon, color = ft.Icons.VERIFIED_OUTLINED, ft.Colors.GREEN
            else:
                bad = verdict.get("first_bad") or {"seq": 0, "reason": ""}
                text = self.t("verify_bad", seq=bad["seq"], reason=bad["reason"])
                icon, color = ft.Icons.GPP_BAD_OUTLINED, ft.Colors.ERROR
            lines: list[ft.Control] = [ft.Text(text, color=color, weight=ft.FontWeight.W_600)]
            if verdict["head"]:
                lines.append(
                    muted(
                        self.t("verify_head", hash=verdict["head"]),
                        mono=True,
                        selectable=True,
                        size=11,
                    )
                )
            result = ft.Row(
                [ft.Icon(icon, color=color), ft.Column(lines, spacing=2, tight=True, expand=True)],
                spacing=8,
            )
        else:
            text = self.t("verify_hint")
            result = muted(text, size=13)
        return card(
            ft.ResponsiveRow(
                [
                    ft.Container(
                        ft.Semantics(
                            identifier=ids.AUDIT_VERIFY,
                            content=ft.FilledTonalButton(
                                self.t("verify"),
                                icon=ft.Icons.VERIFIED_USER_OUTLINED,
                                on_click=self._on_verify,
                                disabled=s.verifying,
                            ),
                        ),
                        col={"xs": 12, "md": 3, "xl": 2},
                    ),
                    ft.Semantics(
                        identifier=ids.AUDIT_VERIFY_RESULT,
                        label=text,
                        content=result,
                        col={"xs": 12, "md": 9, "xl": 10},
                    ),
                ],
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
                run_spacing=8,
            ),
            padding=12,
        )

    def _rows(self) -> ft.Control:
        rows: list[ft.Control] = []
        if self.wide:
            rows.append(self._header())
        for record in self.state.items:
            rows.append(self._row(record) if self.wide else self._card(record))
        return ft.Column(rows, spacing=4 if self.wide else 8)

    def _header(self) -> ft.Control:
        def h(key: str, expand: int) -> ft.Control:
            return ft.Container(muted(self.t(key)), expand=expand)

        return ft.Container(
            ft.Row(
                [
                    h("col.seq", 1),
                    h("col.at", 3),
                    h("col.actor", 2),
                    h("col.action", 3),
                    h("col.target", 4),
                    h("col.detail", 5),
                ],
                spacing=12,
            ),
            padding=ft.Padding.symmetric(horizontal=12, vertical=2),
        )

    def _action(self, record: AuditRecord) -> ft.Control:
        color = ACTION_COLORS.get(record["action"].split(".")[0], ft.Colors.ON_SURFACE_VARIANT)
        return chip(record["action"], color)

    def describe(self, record: AuditRecord) -> str:
        """What the record is about, in one line."""
        detail: Mapping[str, Any] = record["detail"]
        action = record["action"]
        if action == "command.create":
            text = spec_text(detail)
            nodes = detail.get("node_ids")
            if isinstance(nodes, list):
                count = len(nodes)
                text += " · " + (self.t("node_one") if count == 1 else self.t("nodes", n=count))
            return text
        if action == "execution.finish":
            state = detail.get("status") or detail.get("state")
            parts = [self.i18n.t(f"commands.state.{state}") if state else ""]
            if detail.get("exit_code") is not None:
                parts.append(self.t("exit", code=detail["exit_code"]))
            if detail.get("node_id"):
                parts.append(f"node:{str(detail['node_id'])[:8]}")
            if detail.get("reason"):
                parts.append(str(detail["reason"]))
            return " · ".join(p for p in parts if p)
        brief = {k: v for k, v in detail.items() if v not in (None, "", [], {})}
        text = json.dumps(brief, ensure_ascii=False, separators=(", ", ": "))
        return text[:160]

    def _full(self, record: AuditRecord) -> ft.Control:
        body = json.dumps(record["detail"], ensure_ascii=False, indent=2, sort_keys=True)
        return ft.Container(
            ft.Column(
                [
                    mono_text(
                        body,
                        size=12,
                        selectable=True,
                    ),
                    muted(f"{self.t('service')}: {record['service']}", size=11),
                    muted(
                        f"{self.t('hash')}: {record['hash']}", size=11, mono=True, selectable=True
                    ),
                    muted(
                        f"{self.t('prev_hash')}: {record['prev_hash']}",
                        size=11,
                        mono=True,
                        selectable=True,
                    ),
                ],
                spacing=4,
                tight=True,
                scroll=ft.ScrollMode.AUTO,
            ),
            bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
            border_radius=8,
            padding=10,
            height=min(320, 80 + 16 * body.count("\n")),
        )

    def _row(self, record: AuditRecord) -> ft.Control:
        described = self.describe(record)
        line = ft.Row(
            [
                ft.Container(muted(str(record["seq"]), size=12, mono=True), expand=1),
                ft.Container(ft.Text(when(record["at"]), size=13), expand=3),
                ft.Container(
                    ft.Text(
                        record["actor"], size=13, no_wrap=True, overflow=ft.TextOverflow.ELLIPSIS
                    ),
                    expand=2,
                ),
                ft.Container(ft.Row([self._action(record)], tight=True), expand=3),
                ft.Container(
                    mono_text(
                        record["target"],
                        size=12,
                        no_wrap=True,
                        overflow=ft.TextOverflow.ELLIPSIS,
                    ),
                    expand=4,
                ),
                ft.Container(
                    mono_text(
                        described,
                        size=12,
                        no_wrap=True,
                        overflow=ft.TextOverflow.ELLIPSIS,
                    ),
                    expand=5,
                ),
            ],
            spacing=12,
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )
        parts: list[ft.Control] = [line]
        if record["seq"] in self.opened:
            parts.append(self._full(record))
        return ft.Semantics(
            identifier=ids.audit_row(record["seq"]),
            label=f"{record['action']} {record['target']} {described}",
            content=ft.Container(
                ft.Column(parts, spacing=8, tight=True),
                padding=ft.Padding.symmetric(horizontal=12, vertical=8),
                border_radius=8,
                bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
                on_click=self._toggle(record["seq"]),
                ink=True,
            ),
        )

    def _card(self, record: AuditRecord) -> ft.Control:
        described = self.describe(record)
        parts: list[ft.Control] = [
            ft.Row(
                [
                    self._action(record),
                    ft.Container(expand=True),
                    muted(f"#{record['seq']}", mono=True),
                ],
                vertical_alignment=ft.CrossAxisAlignment.CENTER,
            ),
            mono_text(
                described,
                size=13,
                max_lines=3,
                overflow=ft.TextOverflow.ELLIPSIS,
            ),
            muted(record["target"], size=12, mono=True),
            muted(f"{record['actor']} · {when(record['at'])}", size=12),
        ]
        if record["seq"] in self.opened:
            parts.append(self._full(record))
        return ft.Semantics(
            identifier=ids.audit_row(record["seq"]),
            label=f"{record['action']} {record['target']} {described}",
            content=ft.Container(
                ft.Column(parts, spacing=4, tight=True),
                padding=12,
                border_radius=12,
                bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
                on_click=self._toggle(record["seq"]),
                ink=True,
            ),
        )

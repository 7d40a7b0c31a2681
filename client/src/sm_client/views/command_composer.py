"""``/commands/new``: the composer — targets with the live matched count beside a preview,
what to run, options; Run opens the live view of the new command.

Query parameters preselect: ``nodes=<id>,<id>``, ``groups=<name>,…``,
``selector=<labels>``, ``kind=shell|service|logs``, ``unit=``, ``action=``, ``script=``.
"""

from __future__ import annotations

from typing import cast

import flet as ft

from sm_client.api.commands import SERVICE_ACTIONS
from sm_client.state.composer import MODES, ComposerState, LogSource, Mode, Pick
from sm_client.state.observable import Phase
from sm_client.views import ids, state_panels
from sm_client.views.command_common import ScreenBase, card, heading
from sm_client.views.context import RouteParams, ScreenContext
from sm_client.views.styled import mono_style, muted

MODE_ICONS = {
    "nodes": ft.Icons.DNS_OUTLINED,
    "groups": ft.Icons.FOLDER_OUTLINED,
    "labels": ft.Icons.SELL_OUTLINED,
}
KIND_ICONS = {
    "shell": ft.Icons.TERMINAL,
    "service": ft.Icons.SETTINGS_SUGGEST_OUTLINED,
    "logs": ft.Icons.ARTICLE_OUTLINED,
}


class ComposerScreen(ScreenBase):
    name = "composer"

    def __init__(self, ctx: ScreenContext, params: RouteParams) -> None:
        self.state = ComposerState(ctx.api)
        super().__init__(ctx, self.state)
        self.params = dict(params)
        # One checkbox per node, kept across renders: a rebuilt checkbox would
        # drop a tap that lands while the previous tick re-renders the picker.
        self._checks: dict[str, tuple[ft.Semantics, ft.Checkbox]] = {}
        s = self.state

        def field(name: str, **kw: object) -> ft.TextField:
            def changed(e: ft.Event[ft.TextField]) -> None:
                s.set(name, e.control.value)

            return ft.TextField(dense=True, on_change=changed, **kw)  # type: ignore[arg-type]

        # Inputs built once: typing survives every re-render.
        self.search = ft.TextField(
            dense=True,
            prefix_icon=ft.Icons.SEARCH,
            on_change=lambda e: s.set_search(e.control.value),
        )
        self.selector = ft.TextField(
            dense=True,
            text_style=mono_style(),
            prefix_icon=ft.Icons.SELL_OUTLINED,
            on_change=lambda e: s.set_selector(e.control.value),
        )
        self.script = field(
            "script",
            multiline=True,
            min_lines=4,
            max_lines=14,
            text_style=mono_style(13),
        )
        self.env = field(
            "env",
            multiline=True,
            min_lines=1,
            max_lines=6,
            text_style=mono_style(13),
        )
        self.unit = field(
            "service_unit",
            text_style=mono_style(),
        )
        self.logs_unit = field(
            "logs_unit",
            text_style=mono_style(),
        )
        self.logs_path = field(
            "logs_path",
            text_style=mono_style(),
        )
        self.lines = field("logs_lines", keyboard_type=ft.KeyboardType.NUMBER, width=120)
        self.timeout = field("timeout", keyboard_type=ft.KeyboardType.NUMBER)
        self.batch = field("batch")
        self.note = field("note")
        self.action = ft.Dropdown(dense=True, on_select=self._on_action, width=220)
        self.follow = ft.Switch(on_change=lambda e: s.set("logs_follow", bool(e.control.value)))
        self._started = False
        self.render()

    async def enter(self) -> None:
        self.listen()
        if not self._started:
            self._started = True
            await self.state.start(self.params)
            s = self.state
            # The route may have filled fields the inputs must show.
            self.selector.value = s.selector
            self.script.value = s.script
            self.unit.value = s.service_unit
            self.logs_unit.value = s.logs_unit
            self.logs_path.value = s.logs_path
            self.lines.value = s.logs_lines
            self.timeout.value = s.timeout
            self.refresh()

    def leave(self) -> None:
        self.stop_listening()
        self.state.stop()

    # --- events -----------------------------------------------------------------------

    def _on_mode(self, e: ft.Event[ft.SegmentedButton]) -> None:
        selected = e.control.selected
        if selected:
            self.state.set_mode(cast(Mode, selected[0]))

    def _on_kind(self, e: ft.Event[ft.SegmentedButton]) -> None:
        if e.control.selected:
            self.state.set("kind", e.control.selected[0])

    def _on_source(self, e: ft.Event[ft.SegmentedButton]) -> None:
        if e.control.selected:
            self.state.set("logs_source", cast(LogSource, e.control.selected[0]))

    def _on_action(self, e: ft.Event[ft.Dropdown]) -> None:
        if self.action.value:
            self.state.set("service_action", self.action.value)

    def _toggle_node(self, node_id: str) -> ft.ControlEventHandler[ft.Checkbox]:
        def toggle(e: ft.Event[ft.Checkbox]) -> None:
            self.state.toggle_node(node_id, bool(e.control.value))

        return toggle

    def _toggle_group(self, name: str) -> ft.ControlEventHandler[ft.Checkbox]:
        def toggle(e: ft.Event[ft.Checkbox]) -> None:
            self.state.toggle_group(name, bool(e.control.value))

        return toggle

    async def _on_run(self, e: ft.Event[ft.Button]) -> None:
        command_id = await self.state.submit()
        if command_id is not None:
            self.ctx.navigate(f"/commands/{command_id}")

    def _on_select_shown(self, e: ft.Event[ft.TextButton]) -> None:
        self.state.select_all_shown()

    def _on_clear(self, e: ft.Event[ft.TextButton]) -> None:
        self.state.clear_nodes()

    # --- rendering --------------------------------------------------------------------

    def t(self, key: str, **values: object) -> str:
        return self.i18n.t(f"commands.composer.{key}", **values)

    def render(self) -> None:
        s = self.state
        errors = s.shown_errors()
        err = {k: self.i18n.t(v) for k, v in errors.items()}
        self.search.label = self.t("search")
        self.selector.label = self.t("selector")
        self.selector.helper = self.t("selector_help")
        self.script.label = self.t("script")
        self.script.error = err.get("script")
        self.env.label = self.t("env")
        self.env.helper = self.t("env_help")
        self.env.error = err.get("env")
        self.unit.label = self.t("unit")
        self.unit.helper = self.t("unit_help")
        self.unit.error = err.get("unit")
        self.logs_unit.label = self.t("unit")
        self.logs_unit.error = err.get("logs_unit")
        self.logs_path.label = self.t("logs_path")
        self.logs_path.error = err.get("logs_path")
        self.lines.label = self.t("lines")
        self.lines.error = err.get("lines")
        self.timeout.label = self.t("timeout")
        self.timeout.error = err.get("timeout")
        self.batch.label = self.t("batch")
        self.batch.helper = self.t("batch_help")
        self.batch.error = err.get("batch")
        self.note.label = self.t("note")
        self.note.error = err.get("note")
        self.action.label = self.t("action")
        self.action.options = [
            ft.DropdownOption(key=a, text=self.i18n.t(f"commands.action.{a}"))
            for a in SERVICE_ACTIONS
        ]
        self.action.value = s.service_action

        form = ft.Column(
            [self._targets(err), self._what(), self._options(), self._submit()],
            spacing=12,
            col={"xs": 12, "md": 7, "xl": 8},
        )
        preview = ft.Container(self._preview(err), col={"xs": 12, "md": 5, "xl": 4})
        header = ft.Row(
            [
                ft.IconButton(
                    ft.Icons.ARROW_BACK,
                    on_click=lambda _: self.ctx.navigate("/commands"),
                    tooltip=self.i18n.t("commands.run.back"),
                ),
                ft.Text(self.t("title"), size=22, weight=ft.FontWeight.W_600),
            ],
            spacing=4,
        )
        notes: list[ft.Control] = []
        if not s.may_run:
            notes.append(
                card(
                    ft.Row(
                        [
                            ft.Icon(ft.Icons.LOCK_OUTLINE, color=ft.Colors.ON_SURFACE_VARIANT),
                            ft.Text(self.t("read_only")),
                        ]
                    )
                )
            )
        rows: list[ft.Control] = [form, preview] if self.wide else [preview, form]
        self.body.controls = [
            header,
            *notes,
            ft.ResponsiveRow(rows, spacing=12, run_spacing=12),
        ]

    def _matched_text(self) -> str:
        s = self.state
        if s.matching:
            return self.t("matching")
        if s.matched is None:
            return self.t("no_target")
        return self.t("matched_one") if s.matched == 1 else self.t("matched", n=s.matched)

    def _targets(self, err: dict[str, str]) -> ft.Control:
        s = self.state
        mode = ft.Semantics(
            identifier=ids.COMPOSER_TARGET_MODE,
            content=ft.SegmentedButton(
                segments=[
                    ft.Segment(
                        value=m, label=ft.Text(self.t(f"mode.{m}")), icon=ft.Icon(MODE_ICONS[m])
                    )
                    for m in MODES
                ],
                selected=[s.mode],
                on_change=self._on_mode,
                show_selected_icon=False,
            ),
        )
        body: ft.Control
        if s.mode == "nodes":
            body = self._node_picker()
        elif s.mode == "groups":
            body = self._group_picker()
        else:
            body = ft.Semantics(identifier=ids.COMPOSER_TARGET, content=self.selector)
        problem: list[ft.Control] = []
        if "target" in err:
            detail = s.matched_problem.detail if s.matched_problem is not None else ""
            problem.append(
                ft.Text(
                    f"{err['target']} {detail}".strip(),
                    color=ft.Colors.ERROR,
                    size=12,
                    selectable=True,
                )
            )
        return card(
            ft.Column(
                [
                    heading(self.t("targets"), ft.Icons.HUB_OUTLINED),
                    ft.Row([mode], scroll=ft.ScrollMode.AUTO),
                    body,
                    *problem,
                ],
                spacing=12,
                tight=True,
                horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
            )
        )

    def _node_picker(self) -> ft.Control:
        s = self.state
        checks: list[ft.Control] = []
        shown = {c.id for c in s.candidates}
        # Picked nodes outside this search stay visible on top.
        extra = [p for p in s.selected.values() if p.id not in shown]
        for pick in [*extra, *s.candidates]:
            checks.append(self._node_check(pick))
        listing: ft.Control
        if s.picker.phase is Phase.READY or checks:
            listing = ft.Column(checks, spacing=0, scroll=ft.ScrollMode.AUTO)
        else:
            listing = state_panels.for_load(
                self.i18n,
                s.picker,
                lambda: ft.Column(),
                empty_message=self.t("no_nodes"),
                retry=s.reload_picker,
            )
        more: list[ft.Control] = []
        if s.candidates_total > len(s.candidates):
            more.append(
                muted(self.t("more_nodes", shown=len(s.candidates), total=s.candidates_total))
            )
        return ft.Column(
            horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
            controls=[
                ft.Semantics(identifier=ids.COMPOSER_TARGET, content=self.search),
                ft.Row(
                    [
                        ft.Text(
                            self.t("selected", n=len(s.selected)),
                            weight=ft.FontWeight.W_600,
                            expand=True,
                        ),
                        ft.TextButton(self.t("select_shown"), on_click=self._on_select_shown),
                        ft.TextButton(
                            self.t("clear"), on_click=self._on_clear, disabled=not s.selected
                        ),
                    ],
                    vertical_alignment=ft.CrossAxisAlignment.CENTER,
                ),
                ft.Container(
                    listing,
                    height=min(300, max(60, 44 * len(checks) + 8)),
                    border=ft.Border.all(1, ft.Colors.OUTLINE_VARIANT),
                    border_radius=8,
                    padding=ft.Padding.symmetric(horizontal=4, vertical=4),
                ),
                *more,
            ],
            spacing=8,
            tight=True,
        )

    def _node_check(self, pick: Pick) -> ft.Control:
        on = pick.id in self.state.selected
        dot = ft.Container(
            width=8,
            height=8,
            border_radius=4,
            bgcolor=ft.Colors.GREEN if pick.status == "online" else ft.Colors.OUTLINE,
        )
        return ft.Row(
            [
                self._check(pick, on),
                dot,
                ft.Text(
                    pick.name, size=14, no_wrap=True, overflow=ft.TextOverflow.ELLIPSIS, expand=True
                ),
                muted(pick.group or "", size=12),
            ],
            spacing=8,
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )

    def _check(self, pick: Pick, on: bool) -> ft.Semantics:
        if pick.id not in self._checks:
            check = ft.Checkbox(on_change=self._toggle_node(pick.id))
            wrapper = ft.Semantics(identifier=ids.composer_node(pick.id), content=check)
            self._checks[pick.id] = (wrapper, check)
        wrapper, check = self._checks[pick.id]
        wrapper.label = pick.name
        check.value = on
        return wrapper

    def _group_picker(self) -> ft.Control:
        s = self.state

        def ready() -> ft.Control:
            return ft.Column(
                [
                    ft.Checkbox(
                        label=f"{g['name']}  ·  {self.t('group_nodes', n=g['node_count'])}",
                        value=g["name"] in s.selected_groups,
                        on_change=self._toggle_group(g["name"]),
                    )
                    for g in s.groups
                ],
                spacing=0,
            )

        return ft.Semantics(
            identifier=ids.COMPOSER_TARGET,
            container=True,
            content=state_panels.for_load(
                self.i18n,
                s.groups_load,
                ready,
                empty_message=self.t("no_groups"),
                retry=s.reload_picker,
            ),
        )

    def _what(self) -> ft.Control:
        s = self.state
        kind = ft.Semantics(
            identifier=ids.COMPOSER_KIND,
            content=ft.SegmentedButton(
                segments=[
                    ft.Segment(
                        value=k,
                        label=ft.Text(self.i18n.t(f"commands.kind.{k}")),
                        icon=ft.Icon(KIND_ICONS[k]),
                    )
                    for k in ("shell", "service", "logs")
                ],
                selected=[s.kind],
                on_change=self._on_kind,
                show_selected_icon=False,
            ),
        )
        fields: list[ft.Control]
        if s.kind == "shell":
            fields = [ft.Semantics(identifier=ids.COMPOSER_SCRIPT, content=self.script), self.env]
        elif s.kind == "service":
            fields = [
                ft.ResponsiveRow(
                    [
                        ft.Container(self.action, col={"xs": 12, "sm": 5}),
                        ft.Container(
                            self.unit, col={"xs": 12, "sm": 7}, visible=s.service_action != "list"
                        ),
                    ],
                    spacing=8,
                    run_spacing=8,
                )
            ]
        else:
            source = ft.SegmentedButton(
                segments=[
                    ft.Segment(value="unit", label=ft.Text(self.t("logs_unit_choice"))),
                    ft.Segment(value="path", label=ft.Text(self.t("logs_path_choice"))),
                ],
                selected=[s.logs_source],
                on_change=self._on_source,
                show_selected_icon=False,
            )
            fields = [
                ft.Row([muted(self.t("logs_source"), size=13), source], wrap=True),
                self.logs_unit if s.logs_source == "unit" else self.logs_path,
                ft.Row(
                    [
                        self.lines,
                        ft.Row([self.follow, ft.Text(self.t("follow"), size=13)], tight=True),
                    ],
                    wrap=True,
                    spacing=16,
                ),
            ]
        return card(
            ft.Column(
                [
                    heading(self.t("what"), ft.Icons.CODE),
                    ft.Row([kind], scroll=ft.ScrollMode.AUTO),
                    *fields,
                ],
                spacing=12,
                tight=True,
                horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
            )
        )

    def _options(self) -> ft.Control:
        return card(
            ft.Column(
                [
                    heading(self.t("options"), ft.Icons.TUNE),
                    ft.ResponsiveRow(
                        [
                            ft.Semantics(
                                identifier=ids.COMPOSER_TIMEOUT,
                                content=self.timeout,
                                col={"xs": 12, "sm": 4},
                            ),
                            ft.Semantics(
                                identifier=ids.COMPOSER_BATCH,
                                content=self.batch,
                                col={"xs": 12, "sm": 8},
                            ),
                            ft.Container(self.note, col=12),
                        ],
                        spacing=8,
                        run_spacing=12,
                    ),
                ],
                spacing=12,
                tight=True,
                horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
            )
        )

    def _submit(self) -> ft.Control:
        s = self.state
        children: list[ft.Control] = []
        if s.problem is not None:
            children.append(
                ft.Container(
                    ft.Column(
                        [
                            ft.Text(
                                f"{self.t('failed')}: {s.problem.title}",
                                color=ft.Colors.ERROR,
                                weight=ft.FontWeight.W_600,
                            ),
                            ft.Text(s.problem.detail, selectable=True, size=12),
                        ],
                        spacing=2,
                        tight=True,
                    ),
                    padding=12,
                    border_radius=8,
                    bgcolor=ft.Colors.ERROR_CONTAINER,
                )
            )
        if s.may_run:
            busy = s.submitting
            children.append(
                ft.Row(
                    [
                        ft.Text(
                            self._matched_text(), color=ft.Colors.ON_SURFACE_VARIANT, expand=True
                        ),
                        ft.Semantics(
                            identifier=ids.COMPOSER_RUN,
                            content=ft.FilledButton(
                                self.t("submitting") if busy else self.t("run"),
                                icon=ft.Icons.PLAY_ARROW_ROUNDED,
                                on_click=self._on_run,
                                disabled=busy,
                            ),
                        ),
                    ],
                    vertical_alignment=ft.CrossAxisAlignment.CENTER,
                )
            )
        return ft.Column(children, spacing=8, tight=True)

    def _preview(self, err: dict[str, str]) -> ft.Control:
        s = self.state
        count = "—" if s.matched is None else str(s.matched)
        color = ft.Colors.ERROR if "target" in err else ft.Colors.PRIMARY
        rows: list[ft.Control] = []
        for pick in s.preview:
            rows.append(
                ft.Row(
                    [
                        ft.Container(
                            width=8,
                            height=8,
                            border_radius=4,
                            bgcolor=ft.Colors.GREEN
                            if pick.status == "online"
                            else ft.Colors.OUTLINE,
                        ),
                        ft.Text(
                            pick.name,
                            size=13,
                            no_wrap=True,
                            overflow=ft.TextOverflow.ELLIPSIS,
                            expand=True,
                        ),
                        muted(pick.group or "", size=12),
                    ],
                    spacing=8,
                )
            )
        if s.matched is not None and s.matched > len(s.preview) and s.preview:
            rows.append(muted(self.t("preview_more", n=s.matched - len(s.preview))))
        spinner: list[ft.Control] = (
            [ft.ProgressRing(width=16, height=16, stroke_width=2)] if s.matching else []
        )
        return card(
            ft.Column(
                [
                    heading(self.t("preview"), ft.Icons.VISIBILITY_OUTLINED),
                    ft.Semantics(
                        identifier=ids.COMPOSER_MATCHED,
                        label=self._matched_text(),
                        content=ft.Row(
                            [
                                ft.Text(count, size=32, weight=ft.FontWeight.W_700, color=color),
                                ft.Text(
                                    self._matched_text(),
                                    color=ft.Colors.ON_SURFACE_VARIANT,
                                    expand=True,
                                ),
                                *spinner,
                            ],
                            vertical_alignment=ft.CrossAxisAlignment.CENTER,
                        ),
                    ),
                    *rows,
                ],
                spacing=8,
                tight=True,
            )
        )

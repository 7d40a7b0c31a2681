"""The admin screen: users, roles, enrollment tokens, groups and service clients.

Thin: it renders :class:`AdminState` and calls its methods. Wide (≥ 720 px of
its own width) each tab is a table; narrow, a list of cards. Forms are
dialogs that check their fields first, then show the core's refusal (title
and detail) inside the dialog; destructive actions ask for confirmation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

import flet as ft

from sm_client.api.admin import EnrollmentToken, Role, Scope, ServiceClient, User
from sm_client.api.fleet import Group
from sm_client.state.admin import (
    DEFAULT_TTL,
    SCOPES,
    TTL_CHOICES,
    AdminState,
    Errors,
    Revealed,
    Tab,
    check_client,
    check_group,
    check_role,
    check_token,
    check_user,
)
from sm_client.state.observable import Phase, Problem
from sm_client.views import ids, state_panels
from sm_client.views.context import RouteParams, ScreenContext
from sm_client.views.styled import mono_text, muted, pill

WIDE: Final = 720  # px of the screen's own width from which tabs are tables
DIALOG_WIDTH: Final = 440

TAB_IDS: Final = {
    Tab.USERS: ids.ADMIN_TAB_USERS,
    Tab.ROLES: ids.ADMIN_TAB_ROLES,
    Tab.TOKENS: ids.ADMIN_TAB_TOKENS,
    Tab.GROUPS: ids.ADMIN_TAB_GROUPS,
    Tab.CLIENTS: ids.ADMIN_TAB_CLIENTS,
}
TAB_ICONS: Final = {
    Tab.USERS: ft.Icons.PEOPLE_OUTLINE,
    Tab.ROLES: ft.Icons.SHIELD_OUTLINED,
    Tab.TOKENS: ft.Icons.KEY_OUTLINED,
    Tab.GROUPS: ft.Icons.WORKSPACES_OUTLINE,
    Tab.CLIENTS: ft.Icons.SMART_TOY_OUTLINED,
}
STATE_COLORS: Final = {
    "active": (ft.Colors.PRIMARY_CONTAINER, ft.Colors.ON_PRIMARY_CONTAINER),
    "expired": (ft.Colors.SURFACE_CONTAINER_HIGHEST, ft.Colors.ON_SURFACE_VARIANT),
    "exhausted": (ft.Colors.TERTIARY_CONTAINER, ft.Colors.ON_TERTIARY_CONTAINER),
    "revoked": (ft.Colors.ERROR_CONTAINER, ft.Colors.ON_ERROR_CONTAINER),
}


# --- small pieces ----------------------------------------------------------------------


def chip(text: str) -> ft.Control:
    return pill(text, ft.Colors.SECONDARY_CONTAINER, ft.Colors.ON_SECONDARY_CONTAINER)


def when(iso: str | None) -> str:
    """``2026-11-28 16:01`` (UTC) from an ISO 8601 timestamp."""
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def action_button(
    icon: ft.IconData,
    label: str,
    identifier: str,
    on_click: Callable[[ft.Event[ft.IconButton]], Awaitable[None]],
    *,
    danger: bool = False,
    hidden: bool = False,
) -> ft.Control:
    """An icon button with an accessible name; ``hidden`` keeps its place empty."""
    if hidden:
        return ft.Container(width=40)
    return ft.Semantics(
        identifier=identifier,
        label=label,
        content=ft.IconButton(
            icon,
            tooltip=label,
            icon_size=20,
            icon_color=ft.Colors.ERROR if danger else ft.Colors.ON_SURFACE_VARIANT,
            on_click=on_click,
        ),
    )


class ProblemBox:
    """Where a dialog shows the core's refusal."""

    def __init__(self) -> None:
        self.text = ft.Text(color=ft.Colors.ON_ERROR_CONTAINER, selectable=True, size=13)
        self.semantics = ft.Semantics(identifier=ids.ADMIN_FORM_ERROR, label="", content=self.text)
        self.control = ft.Container(
            ft.Row(
                [
                    ft.Icon(ft.Icons.ERROR_OUTLINE, color=ft.Colors.ON_ERROR_CONTAINER, size=18),
                    ft.Container(self.semantics, expand=True),
                ],
                vertical_alignment=ft.CrossAxisAlignment.START,
            ),
            bgcolor=ft.Colors.ERROR_CONTAINER,
            border_radius=ft.BorderRadius.all(8),
            padding=10,
            visible=False,
        )

    def show(self, problem: Problem) -> None:
        text = f"{problem.title}: {problem.detail}" if problem.detail else problem.title
        self.text.value = text
        self.semantics.label = text
        self.control.visible = True

    def clear(self) -> None:
        self.control.visible = False


# --- the screen -----------------------------------------------------------------------


class AdminScreen:
    def __init__(self, ctx: ScreenContext, params: RouteParams) -> None:
        self.ctx = ctx
        self.i18n = ctx.i18n
        self.state = AdminState(ctx.api, ctx.feed)
        wanted = params.get("tab", "")
        if wanted in {tab.value for tab in Tab}:
            self.state.tab = Tab(wanted)
        page_width = float(ctx.page.width or 1440)
        self.width = page_width - (96 if page_width >= 840 else 0)
        self._wide = self.width >= WIDE
        self.body = ft.Column(spacing=12, expand=True, scroll=ft.ScrollMode.AUTO)
        self.root = ft.Semantics(
            identifier=ids.screen("admin"),
            content=ft.Container(
                self.body,
                expand=True,
                padding=ft.Padding.only(left=20, right=20, top=4, bottom=16),
                on_size_change=self._on_size,
                size_change_interval=150,
            ),
        )
        self._stops: list[Callable[[], None]] = []
        self._render()

    # --- Screen -------------------------------------------------------------------

    def control(self) -> ft.Control:
        return self.root

    async def enter(self) -> None:
        if not self._stops:
            self._stops = [self.state.listen(self._rerender), self.i18n.listen(self._rerender)]
        await self.state.enter()

    def leave(self) -> None:
        for stop in self._stops:
            stop()
        self._stops = []
        self.state.leave()

    # --- rendering ----------------------------------------------------------------

    def t(self, key: str, **values: object) -> str:
        return self.i18n.t(key, **values)

    def _on_size(self, e: ft.LayoutSizeChangeEvent[ft.LayoutControl]) -> None:
        self.width = e.width
        if (self.width >= WIDE) != self._wide:
            self._wide = self.width >= WIDE
            self._rerender()

    def _rerender(self) -> None:
        self._render()
        with contextlib.suppress(RuntimeError):  # not on the page (yet, or any more)
            self.body.update()

    def _render(self) -> None:
        self.body.controls = [self._header()]
        if not self.state.allowed:
            self.body.controls.append(
                state_panels.error(
                    self.i18n, self.t("admin.forbidden"), self.t("admin.forbidden_detail")
                )
            )
            return
        self.body.controls.append(self._tabs())
        # a fixed slot, so the page does not jump while an action runs
        self.body.controls.append(
            ft.ProgressBar(height=2) if self.state.busy else ft.Container(height=2)
        )
        if self.state.revealed is not None:
            self.body.controls.append(self._revealed(self.state.revealed))
        self.body.controls.append(self._toolbar())
        load = self.state.load_of(self.state.tab)
        empty_key = f"admin.{self.state.tab.value}.empty"
        panel = state_panels.for_load(
            self.i18n,
            load,
            self._panel,
            empty_message=self.t(empty_key),
            retry=self.state.refresh,
        )
        if load.phase is Phase.ERROR and load.problem is not None and load.problem.status == 403:
            panel = state_panels.error(
                self.i18n, load.problem.title, load.problem.detail or self.t("admin.forbidden")
            )
        self.body.controls.append(panel)

    def _header(self) -> ft.Control:
        """One line under the shell's title (which names the screen)."""
        return muted(self.t("admin.subtitle"), size=13)

    def _tabs(self) -> ft.Control:
        """Wide: icon and label side by side; narrow: five equal tabs, icon over a short label."""
        buttons: list[ft.Control] = []
        for tab in Tab:
            selected = tab is self.state.tab
            label = self.t(f"admin.tab.{tab.value}")
            color = ft.Colors.PRIMARY if selected else ft.Colors.ON_SURFACE_VARIANT
            weight = ft.FontWeight.W_600 if selected else None
            icon = ft.Icon(TAB_ICONS[tab], size=18 if self._wide else 20, color=color)
            inner: ft.Control
            if self._wide:
                inner = ft.Row(
                    [icon, ft.Text(label, color=color, weight=weight)], spacing=6, tight=True
                )
            else:
                inner = ft.Column(
                    [
                        icon,
                        ft.Text(
                            self.t(f"admin.tab_short.{tab.value}"),
                            color=color,
                            weight=weight,
                            size=12,
                            no_wrap=True,
                        ),
                    ],
                    spacing=2,
                    tight=True,
                    horizontal_alignment=ft.CrossAxisAlignment.CENTER,
                )
            button = ft.TextButton(
                content=inner,
                on_click=self._select_handler(tab),
                style=None
                if self._wide
                else ft.ButtonStyle(
                    padding=ft.Padding.symmetric(horizontal=2, vertical=6),
                    shape=ft.RoundedRectangleBorder(radius=8),
                ),
            )
            buttons.append(
                ft.Container(
                    ft.Semantics(
                        identifier=TAB_IDS[tab], label=label, selected=selected, content=button
                    ),
                    border=ft.Border.only(
                        bottom=ft.BorderSide(
                            2, ft.Colors.PRIMARY if selected else ft.Colors.TRANSPARENT
                        )
                    ),
                    expand=None if self._wide else 1,
                )
            )
        return ft.Container(
            ft.Row(buttons, spacing=0, scroll=ft.ScrollMode.AUTO if self._wide else None),
            border=ft.Border.only(bottom=ft.BorderSide(1, ft.Colors.OUTLINE_VARIANT)),
        )

    def _select_handler(self, tab: Tab) -> Callable[[ft.Event[ft.TextButton]], Awaitable[None]]:
        async def select(_: ft.Event[ft.TextButton]) -> None:
            await self.state.select(tab)

        return select

    def _toolbar(self) -> ft.Control:
        tab = self.state.tab
        count = {
            Tab.USERS: len(self.state.users),
            Tab.ROLES: len(self.state.roles),
            Tab.TOKENS: len(self.state.tokens),
            Tab.GROUPS: len(self.state.groups),
            Tab.CLIENTS: len(self.state.clients),
        }[tab]
        new_ids = {
            Tab.USERS: ids.ADMIN_USER_NEW,
            Tab.ROLES: ids.ADMIN_ROLE_NEW,
            Tab.TOKENS: ids.ADMIN_TOKEN_NEW,
            Tab.GROUPS: ids.ADMIN_GROUP_NEW,
            Tab.CLIENTS: ids.ADMIN_CLIENT_NEW,
        }
        openers = {
            Tab.USERS: self._new_user,
            Tab.ROLES: self._new_role,
            Tab.TOKENS: self._new_token,
            Tab.GROUPS: self._new_group,
            Tab.CLIENTS: self._new_client,
        }
        opener = openers[tab]

        async def on_new(_: ft.Event[ft.Button]) -> None:
            opener()

        async def on_refresh(_: ft.Event[ft.IconButton]) -> None:
            await self.state.refresh()

        ready = self.state.load_of(tab).phase in (Phase.READY, Phase.EMPTY)
        new_label = self.t(f"admin.{tab.value}.new")
        return ft.Row(
            [
                ft.Column(
                    [
                        ft.Text(
                            self.t(f"admin.{tab.value}.heading"),
                            size=16,
                            weight=ft.FontWeight.W_600,
                        ),
                        muted(self.t("admin.count", count=count) if ready else ""),
                    ],
                    spacing=0,
                    expand=True,
                ),
                ft.Semantics(
                    label=self.t("admin.refresh"),
                    content=ft.IconButton(
                        ft.Icons.REFRESH, tooltip=self.t("admin.refresh"), on_click=on_refresh
                    ),
                ),
                ft.Semantics(
                    identifier=new_ids[tab],
                    label=new_label,
                    content=ft.FilledButton(
                        new_label if self._wide else self.t("admin.new_short"),
                        icon=ft.Icons.ADD,
                        on_click=on_new,
                    ),
                ),
            ],
            vertical_alignment=ft.CrossAxisAlignment.CENTER,
        )

    def _panel(self) -> ft.Control:
        tab = self.state.tab
        if tab is Tab.USERS:
            return self._users()
        if tab is Tab.ROLES:
            return self._roles()
        if tab is Tab.TOKENS:
            return self._tokens()
        if tab is Tab.GROUPS:
            return self._groups()
        return self._clients()

    # --- tables and cards ---------------------------------------------------------

    def _table(self, columns: list[tuple[str, int]], rows: list[list[ft.Control]]) -> ft.Control:
        """A full-width table: ``columns`` are (heading, flex); cells follow them."""

        def line(cells: list[ft.Control], *, heading: bool = False) -> ft.Control:
            return ft.Container(
                ft.Row(
                    [
                        ft.Container(
                            cell,
                            expand=flex,
                            # the actions column (no heading) keeps to the right
                            alignment=ft.Alignment.CENTER_RIGHT
                            if not title
                            else ft.Alignment.CENTER_LEFT,
                        )
                        for cell, (title, flex) in zip(cells, columns, strict=True)
                    ],
                    spacing=12,
                    vertical_alignment=ft.CrossAxisAlignment.CENTER,
                ),
                padding=ft.Padding.symmetric(horizontal=16, vertical=8 if heading else 6),
                bgcolor=ft.Colors.SURFACE_CONTAINER if heading else None,
                border=None
                if heading
                else ft.Border.only(top=ft.BorderSide(1, ft.Colors.OUTLINE_VARIANT)),
                height=None if heading else 56,
            )

        head = line(
            [
                ft.Text(
                    title, size=12, weight=ft.FontWeight.W_600, color=ft.Colors.ON_SURFACE_VARIANT
                )
                for title, _ in columns
            ],
            heading=True,
        )
        return ft.Container(
            ft.Column([head, *(line(cells) for cells in rows)], spacing=0),
            border=ft.Border.all(1, ft.Colors.OUTLINE_VARIANT),
            border_radius=ft.BorderRadius.all(12),
            clip_behavior=ft.ClipBehavior.ANTI_ALIAS,
        )

    def _card(
        self,
        title: ft.Control,
        lines: list[ft.Control],
        actions: list[ft.Control],
        *,
        identifier: str | None = None,
        label: str | None = None,
    ) -> ft.Control:
        card = ft.Container(
            ft.Column(
                [
                    ft.Row(
                        [ft.Container(title, expand=True), *actions],
                        vertical_alignment=ft.CrossAxisAlignment.CENTER,
                        spacing=0,
                    ),
                    *lines,
                ],
                spacing=6,
            ),
            bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
            border=ft.Border.all(1, ft.Colors.OUTLINE_VARIANT),
            border_radius=ft.BorderRadius.all(12),
            padding=ft.Padding.only(left=14, right=4, top=8, bottom=12),
        )
        if identifier is None:
            return card
        return ft.Semantics(identifier=identifier, label=label, content=card)

    def _row(self, cells: list[ft.Control], identifier: str, label: str) -> list[ft.Control]:
        """The first cell carries the row's identifier and label."""
        return [ft.Semantics(identifier=identifier, label=label, content=cells[0]), *cells[1:]]

    # users
    def _users(self) -> ft.Control:
        me = self.state.me
        if self._wide:
            rows = [
                self._row(
                    self._user_cells(u, me), ids.admin_user_row(u["username"]), self._user_label(u)
                )
                for u in self.state.users
            ]
            return self._table(
                [
                    (self.t("admin.users.name"), 3),
                    (self.t("admin.users.role"), 2),
                    (self.t("admin.users.status"), 2),
                    (self.t("admin.created"), 2),
                    (self.t("admin.updated"), 2),
                    ("", 4),  # four actions: 160 px from the narrowest table,
                ],
                rows,
            )
        cards = []
        for user in self.state.users:
            cells = self._user_cells(user, me)
            cards.append(
                self._card(
                    cells[0],
                    [
                        ft.Row([cells[1], cells[2]], spacing=8, wrap=True),
                        muted(
                            f"{self.t('admin.created')} {when(user['created_at'])}"
                            f" · {self.t('admin.updated')} {when(user['updated_at'])}"
                        ),
                    ],
                    [cells[5]],
                    identifier=ids.admin_user_row(user["username"]),
                    label=self._user_label(user),
                )
            )
        return ft.Column(cards, spacing=8)

    def _user_label(self, user: User) -> str:
        status = self.t("admin.users.disabled" if user["disabled"] else "admin.users.active")
        return f"{user['username']}, {user['role']}, {status}"

    def _user_cells(self, user: User, me: str | None) -> list[ft.Control]:
        name = user["username"]
        is_me = name == me
        title: list[ft.Control] = [
            ft.CircleAvatar(
                content=ft.Text(name[:1].upper(), size=13, weight=ft.FontWeight.W_600),
                radius=14,
                bgcolor=ft.Colors.PRIMARY_CONTAINER,
                color=ft.Colors.ON_PRIMARY_CONTAINER,
            ),
            ft.Text(
                name, weight=ft.FontWeight.W_500, no_wrap=True, overflow=ft.TextOverflow.ELLIPSIS
            ),
        ]
        if is_me:
            title.append(chip(self.t("admin.users.you")))
        status = (
            pill(
                self.t("admin.users.disabled"),
                ft.Colors.ERROR_CONTAINER,
                ft.Colors.ON_ERROR_CONTAINER,
                icon=ft.Icons.BLOCK,
            )
            if user["disabled"]
            else pill(
                self.t("admin.users.active"),
                ft.Colors.PRIMARY_CONTAINER,
                ft.Colors.ON_PRIMARY_CONTAINER,
                icon=ft.Icons.CHECK_CIRCLE_OUTLINE,
            )
        )

        async def on_role(_: ft.Event[ft.IconButton]) -> None:
            self._change_role(user)

        async def on_password(_: ft.Event[ft.IconButton]) -> None:
            self._reset_password(user)

        async def on_toggle(_: ft.Event[ft.IconButton]) -> None:
            self._toggle_user(user)

        async def on_delete(_: ft.Event[ft.IconButton]) -> None:
            self._delete_user(user)

        toggle = "enable" if user["disabled"] else "disable"
        actions = ft.Row(
            [
                action_button(
                    ft.Icons.MANAGE_ACCOUNTS_OUTLINED,
                    self.t("admin.users.change_role", name=name),
                    ids.admin_user_action("role", name),
                    on_role,
                ),
                action_button(
                    ft.Icons.PASSWORD,
                    self.t("admin.users.reset_password", name=name),
                    ids.admin_user_action("password", name),
                    on_password,
                ),
                action_button(
                    ft.Icons.LOCK_OPEN if user["disabled"] else ft.Icons.BLOCK,
                    self.t(f"admin.users.{toggle}", name=name),
                    ids.admin_user_action(toggle, name),
                    on_toggle,
                    hidden=is_me,
                ),
                action_button(
                    ft.Icons.DELETE_OUTLINE,
                    self.t("admin.users.delete", name=name),
                    ids.admin_user_action("delete", name),
                    on_delete,
                    danger=True,
                    hidden=is_me,
                ),
            ],
            spacing=0,
            alignment=ft.MainAxisAlignment.END,
            tight=True,
        )
        return [
            ft.Row(title, spacing=10),
            chip(user["role"]),
            status,
            muted(when(user["created_at"])),
            muted(when(user["updated_at"])),
            actions,
        ]

    # roles
    def _roles(self) -> ft.Control:
        cards: list[ft.Control] = []
        for role in self.state.roles:
            cards.append(ft.Container(self._role_card(role), col={"xs": 12, "md": 6, "xl": 4}))
        return ft.ResponsiveRow(cards, spacing=12, run_spacing=12)

    def _role_card(self, role: Role) -> ft.Control:
        name = role["name"]
        title: list[ft.Control] = [
            ft.Icon(ft.Icons.SHIELD_OUTLINED, size=18, color=ft.Colors.PRIMARY),
            ft.Text(name, weight=ft.FontWeight.W_600),
        ]
        title.append(
            pill(
                self.t("admin.roles.builtin" if role["builtin"] else "admin.roles.custom"),
                ft.Colors.SURFACE_CONTAINER_HIGHEST,
                ft.Colors.ON_SURFACE_VARIANT,
            )
        )
        actions: list[ft.Control] = []
        if not role["builtin"]:

            async def on_edit(_: ft.Event[ft.IconButton]) -> None:
                self._role_form(role)

            async def on_delete(_: ft.Event[ft.IconButton]) -> None:
                self._delete_role(role)

            actions = [
                action_button(
                    ft.Icons.EDIT_OUTLINED,
                    self.t("admin.roles.edit", name=name),
                    ids.admin_role_action("edit", name),
                    on_edit,
                ),
                action_button(
                    ft.Icons.DELETE_OUTLINE,
                    self.t("admin.roles.delete", name=name),
                    ids.admin_role_action("delete", name),
                    on_delete,
                    danger=True,
                ),
            ]
        description = role["description"] or (
            self.t(f"admin.roles.about.{name}") if role["builtin"] else ""
        )
        lines: list[ft.Control] = []
        if description:
            lines.append(muted(description, size=13))
        lines.append(
            ft.Row(
                [chip(self.t(f"admin.scope.{scope}")) for scope in role["scopes"]],
                wrap=True,
                spacing=6,
                run_spacing=6,
            )
        )
        return self._card(
            ft.Row(title, spacing=8, wrap=True),
            lines,
            actions,
            label=f"{name}: {', '.join(role['scopes'])}",
        )

    # tokens
    def _tokens(self) -> ft.Control:
        if self._wide:
            rows = [
                self._row(
                    self._token_cells(token),
                    ids.admin_token_row(token["id"]),
                    self._token_label(token),
                )
                for token in self.state.tokens
            ]
            return self._table(
                [
                    (self.t("admin.tokens.description"), 3),
                    (self.t("admin.tokens.state"), 2),
                    (self.t("admin.tokens.uses"), 1),
                    (self.t("admin.tokens.group"), 2),
                    (self.t("admin.tokens.labels"), 3),
                    (self.t("admin.tokens.expires"), 2),
                    ("", 1),
                ],
                rows,
            )
        cards = []
        for token in self.state.tokens:
            cells = self._token_cells(token)
            details: list[ft.Control] = [
                ft.Row(
                    [cells[1], muted(self.t("admin.tokens.uses_of", uses=self._uses(token)))],
                    spacing=8,
                    wrap=True,
                ),
            ]
            if token["group"] or token["labels"]:
                pieces = [cells[3]] if token["group"] else []
                details.append(
                    ft.Row([*pieces, cells[4]] if token["labels"] else pieces, spacing=6, wrap=True)
                )
            details.append(
                muted(
                    f"{self.t('admin.tokens.expires')} {when(token['expires_at'])} · {token['created_by']}"
                )
            )
            cards.append(
                self._card(
                    cells[0],
                    details,
                    [cells[6]],
                    identifier=ids.admin_token_row(token["id"]),
                    label=self._token_label(token),
                )
            )
        return ft.Column(cards, spacing=8)

    def _token_label(self, token: EnrollmentToken) -> str:
        return f"{token['description'] or token['id'][:8]}, {self.t('admin.tokens.state.' + token['state'])}"

    def _uses(self, token: EnrollmentToken) -> str:
        limit = "∞" if token["max_uses"] is None else str(token["max_uses"])
        return f"{token['uses']} / {limit}"

    def _token_cells(self, token: EnrollmentToken) -> list[ft.Control]:
        bg, fg = STATE_COLORS.get(token["state"], STATE_COLORS["expired"])
        state = pill(self.t(f"admin.tokens.state.{token['state']}"), bg, fg)
        title = ft.Column(
            [
                ft.Text(
                    token["description"] or self.t("admin.tokens.untitled"),
                    weight=ft.FontWeight.W_500,
                    no_wrap=True,
                    overflow=ft.TextOverflow.ELLIPSIS,
                ),
                muted(token["id"][:8] + "…", size=11, selectable=True),
            ],
            spacing=0,
        )
        group = chip(token["group"]) if token["group"] else muted("—")
        labels = (
            ft.Row(
                [chip(f"{k}={v}" if v else k) for k, v in token["labels"].items()],
                spacing=4,
                wrap=True,
                run_spacing=4,
            )
            if token["labels"]
            else muted("—")
        )

        async def on_revoke(_: ft.Event[ft.IconButton]) -> None:
            self._revoke_token(token)

        revoke: ft.Control = (
            action_button(
                ft.Icons.BLOCK,
                self.t("admin.tokens.revoke"),
                ids.admin_token_revoke(token["id"]),
                on_revoke,
                danger=True,
            )
            if token["state"] == "active"
            else ft.Container(width=40)
        )
        return [
            title,
            state,
            ft.Text(self._uses(token), size=13),
            group,
            labels,
            muted(when(token["expires_at"])),
            ft.Row([revoke], alignment=ft.MainAxisAlignment.END, tight=True),
        ]

    def _revealed(self, revealed: Revealed) -> ft.Control:
        copy_id = (
            ids.admin_token_copy(revealed.name)
            if revealed.kind == "token"
            else ids.admin_client_action("copy", revealed.name)
        )

        async def on_copy(_: ft.Event[ft.Button]) -> None:
            self.ctx.notify(self.t("admin.copied"))

        async def on_done(_: ft.Event[ft.TextButton]) -> None:
            self.state.dismiss_revealed()

        heading = self.t(f"admin.revealed.{revealed.kind}", name=revealed.name)
        return ft.Container(
            ft.Column(
                [
                    ft.Row(
                        [
                            ft.Icon(ft.Icons.KEY, color=ft.Colors.ON_TERTIARY_CONTAINER),
                            ft.Text(
                                heading,
                                weight=ft.FontWeight.W_600,
                                color=ft.Colors.ON_TERTIARY_CONTAINER,
                                expand=True,
                            ),
                        ]
                    ),
                    ft.Text(
                        self.t("admin.revealed.once"),
                        size=13,
                        color=ft.Colors.ON_TERTIARY_CONTAINER,
                    ),
                    ft.Semantics(
                        identifier=ids.ADMIN_SECRET,
                        label=revealed.secret,
                        content=ft.Container(
                            mono_text(
                                revealed.secret,
                                selectable=True,
                                size=13,
                            ),
                            bgcolor=ft.Colors.SURFACE,
                            border_radius=ft.BorderRadius.all(8),
                            padding=10,
                        ),
                    ),
                    ft.Row(
                        [
                            ft.Semantics(
                                identifier=copy_id,
                                label=self.t("admin.copy"),
                                content=ft.FilledTonalButton(
                                    self.t("admin.copy"),
                                    icon=ft.Icons.COPY,
                                    action=ft.CopyToClipboard(revealed.secret),
                                    on_click=on_copy,
                                ),
                            ),
                            ft.TextButton(self.t("admin.revealed.done"), on_click=on_done),
                        ],
                        wrap=True,
                    ),
                ],
                spacing=8,
            ),
            bgcolor=ft.Colors.TERTIARY_CONTAINER,
            border_radius=ft.BorderRadius.all(12),
            padding=16,
        )

    # groups
    def _groups(self) -> ft.Control:
        if self._wide:
            rows = [
                self._row(
                    self._group_cells(group), ids.admin_group_row(group["name"]), group["name"]
                )
                for group in self.state.groups
            ]
            return self._table(
                [
                    (self.t("admin.groups.name"), 2),
                    (self.t("admin.groups.description"), 4),
                    (self.t("admin.groups.nodes"), 1),
                    (self.t("admin.created"), 2),
                    (self.t("admin.updated"), 2),
                    ("", 1),
                ],
                rows,
            )
        cards = []
        for group in self.state.groups:
            cells = self._group_cells(group)
            lines: list[ft.Control] = []
            if group["description"]:
                lines.append(muted(group["description"], size=13))
            lines.append(
                ft.Row(
                    [cells[2], muted(f"{self.t('admin.updated')} {when(group['updated_at'])}")],
                    spacing=8,
                    wrap=True,
                )
            )
            cards.append(
                self._card(
                    cells[0],
                    lines,
                    [cells[5]],
                    identifier=ids.admin_group_row(group["name"]),
                    label=group["name"],
                )
            )
        return ft.Column(cards, spacing=8)

    def _group_cells(self, group: Group) -> list[ft.Control]:
        name = group["name"]

        async def on_nodes(_: ft.Event[ft.TextButton]) -> None:
            self.ctx.navigate(f"/nodes?group={name}")

        async def on_edit(_: ft.Event[ft.IconButton]) -> None:
            self._group_form(group)

        async def on_delete(_: ft.Event[ft.IconButton]) -> None:
            self._delete_group(group)

        return [
            ft.Row(
                [
                    ft.Icon(ft.Icons.WORKSPACES_OUTLINE, size=18, color=ft.Colors.PRIMARY),
                    ft.Text(
                        name,
                        weight=ft.FontWeight.W_500,
                        no_wrap=True,
                        overflow=ft.TextOverflow.ELLIPSIS,
                    ),
                ],
                spacing=8,
            ),
            muted(group["description"] or "—", size=13),
            ft.TextButton(
                self.t("admin.groups.node_count", count=group["node_count"]),
                on_click=on_nodes,
                tooltip=self.t("admin.groups.show_nodes"),
                style=ft.ButtonStyle(padding=ft.Padding.symmetric(horizontal=4)),
            ),
            muted(when(group["created_at"])),
            muted(when(group["updated_at"])),
            ft.Row(
                [
                    action_button(
                        ft.Icons.EDIT_OUTLINED,
                        self.t("admin.groups.edit", name=name),
                        ids.admin_group_action("edit", name),
                        on_edit,
                    ),
                    action_button(
                        ft.Icons.DELETE_OUTLINE,
                        self.t("admin.groups.delete", name=name),
                        ids.admin_group_action("delete", name),
                        on_delete,
                        danger=True,
                    ),
                ],
                spacing=0,
                alignment=ft.MainAxisAlignment.END,
                tight=True,
            ),
        ]

    # service clients
    def _clients(self) -> ft.Control:
        if self._wide:
            return self._table(
                [
                    (self.t("admin.clients.id"), 3),
                    (self.t("admin.clients.role"), 2),
                    (self.t("admin.clients.description"), 4),
                    (self.t("admin.created"), 2),
                    ("", 1),
                ],
                [self._client_cells(client) for client in self.state.clients],
            )
        cards = []
        for client in self.state.clients:
            cells = self._client_cells(client)
            lines: list[ft.Control] = [
                ft.Row([cells[1], muted(when(client["created_at"]))], spacing=8)
            ]
            if client["description"]:
                lines.append(muted(client["description"], size=13))
            cards.append(self._card(cells[0], lines, [cells[4]]))
        return ft.Column(cards, spacing=8)

    def _client_cells(self, client: ServiceClient) -> list[ft.Control]:
        cid = client["client_id"]

        async def on_edit(_: ft.Event[ft.IconButton]) -> None:
            self._client_form(client)

        async def on_delete(_: ft.Event[ft.IconButton]) -> None:
            self._delete_client(client)

        return [
            ft.Row(
                [
                    ft.Icon(ft.Icons.SMART_TOY_OUTLINED, size=18, color=ft.Colors.PRIMARY),
                    ft.Text(cid, weight=ft.FontWeight.W_500, selectable=True),
                ],
                spacing=8,
            ),
            chip(client["role"]),
            muted(client["description"] or "—", size=13),
            muted(when(client["created_at"])),
            ft.Row(
                [
                    action_button(
                        ft.Icons.EDIT_OUTLINED,
                        self.t("admin.clients.edit", name=cid),
                        ids.admin_client_action("edit", cid),
                        on_edit,
                    ),
                    action_button(
                        ft.Icons.DELETE_OUTLINE,
                        self.t("admin.clients.delete", name=cid),
                        ids.admin_client_action("delete", cid),
                        on_delete,
                        danger=True,
                    ),
                ],
                spacing=0,
                alignment=ft.MainAxisAlignment.END,
                tight=True,
            ),
        ]

    # --- dialogs ------------------------------------------------------------------

    def _dialog(
        self,
        title: str,
        content: list[ft.Control],
        ok_label: str,
        submit: Callable[[ProblemBox], Awaitable[bool]],
        *,
        ok_id: str = ids.ADMIN_FORM_SUBMIT,
        danger: bool = False,
    ) -> None:
        """A dialog whose button awaits ``submit``; it closes when that returns True."""
        problem = ProblemBox()
        ok = ft.FilledButton(
            ok_label,
            style=ft.ButtonStyle(bgcolor=ft.Colors.ERROR, color=ft.Colors.ON_ERROR)
            if danger
            else None,
        )
        dialog = ft.AlertDialog(
            modal=True,
            title=ft.Text(title),
            content=ft.Container(
                ft.Column(
                    [*content, problem.control],
                    tight=True,
                    spacing=12,
                    horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
                ),
                width=DIALOG_WIDTH,
            ),
            scrollable=True,
            actions=[
                ft.Semantics(
                    identifier=ids.CONFIRM_CANCEL,
                    label=self.t("states.cancel"),
                    content=ft.TextButton(self.t("states.cancel"), on_click=lambda _: close()),
                ),
                ft.Semantics(identifier=ok_id, label=ok_label, content=ok),
            ],
        )

        def close() -> None:
            # this dialog, not the topmost one (a snack bar may be shown above it)
            dialog.open = False
            dialog.update()

        async def on_ok(_: ft.Event[ft.Button]) -> None:
            problem.clear()
            ok.disabled = True
            dialog.update()
            try:
                done = await submit(problem)
            finally:
                ok.disabled = False
            if done:
                close()
            else:
                dialog.update()

        ok.on_click = on_ok
        self.ctx.page.show_dialog(dialog)

    def _confirm(
        self,
        title: str,
        message: str,
        ok_label: str,
        action: Callable[[], Awaitable[Problem | None]],
        done_message: str,
    ) -> None:
        async def submit(problem: ProblemBox) -> bool:
            refused = await action()
            if refused is not None:
                problem.show(refused)
                return False
            self.ctx.notify(done_message)
            return True

        self._dialog(title, [ft.Text(message)], ok_label, submit, ok_id=ids.CONFIRM_OK, danger=True)

    def _field(
        self,
        label: str,
        value: str = "",
        *,
        password: bool = False,
        autofocus: bool = False,
        disabled: bool = False,
        helper: str | None = None,
        hint: str | None = None,
        max_length: int | None = None,
        lines: int = 1,
        number: bool = False,
    ) -> ft.TextField:
        return ft.TextField(
            label=label,
            value=value,
            dense=True,
            password=password,
            can_reveal_password=password,
            autofocus=autofocus,
            disabled=disabled,
            helper=helper,
            helper_max_lines=2,
            error_max_lines=2,
            hint_text=hint,
            max_length=max_length,
            multiline=lines > 1,
            min_lines=lines,
            max_lines=max(lines, 1) * 2 if lines > 1 else 1,
            keyboard_type=ft.KeyboardType.NUMBER if number else ft.KeyboardType.TEXT,
        )

    def _role_dropdown(self, value: str | None) -> ft.Dropdown:
        return ft.Dropdown(
            label=self.t("admin.users.role"),
            value=value,
            options=[ft.DropdownOption(key=name, text=name) for name in self.state.role_names],
            expand=True,
            dense=True,
        )

    def _show_errors(self, fields: dict[str, ft.TextField | ft.Dropdown], errors: Errors) -> None:
        for name, field in fields.items():
            text = self.t(errors[name]) if name in errors else None
            if isinstance(field, ft.Dropdown):
                field.error_text = text
            else:
                field.error = text

    # users
    def _new_user(self) -> None:
        username = self._field(self.t("admin.users.name"), autofocus=True)
        password = self._field(
            self.t("admin.users.password"),
            password=True,
            helper=self.t("admin.users.password_hint"),
        )
        role = self._role_dropdown("viewer")

        async def submit(problem: ProblemBox) -> bool:
            values = (username.value.strip(), password.value, role.value or "")
            errors = check_user(*values)
            self._show_errors({"username": username, "password": password, "role": role}, errors)
            if errors:
                return False
            refused = await self.state.create_user(*values)
            if refused is not None:
                problem.show(refused)
                return False
            self.ctx.notify(self.t("admin.users.created", name=values[0]))
            return True

        self._dialog(
            self.t("admin.users.new"),
            [username, password, ft.Row([role])],
            self.t("admin.create"),
            submit,
        )

    def _change_role(self, user: User) -> None:
        role = self._role_dropdown(user["role"])

        async def submit(problem: ProblemBox) -> bool:
            if not role.value:
                role.error_text = self.t("admin.error.required")
                return False
            if role.value == user["role"]:
                return True
            refused = await self.state.set_role(user["username"], role.value)
            if refused is not None:
                problem.show(refused)
                return False
            self.ctx.notify(
                self.t("admin.users.role_changed", name=user["username"], role=role.value)
            )
            return True

        self._dialog(
            self.t("admin.users.change_role", name=user["username"]),
            [muted(self.t("admin.users.role_hint"), size=13), ft.Row([role])],
            self.t("admin.save"),
            submit,
        )

    def _reset_password(self, user: User) -> None:
        name = user["username"]
        password = self._field(
            self.t("admin.users.new_password"),
            password=True,
            autofocus=True,
            helper=self.t("admin.users.new_password_hint"),
        )
        again = self._field(self.t("admin.users.password_again"), password=True)

        async def submit(problem: ProblemBox) -> bool:
            result = await self.state.reset_password(name, password.value, again.value)
            if isinstance(result, dict):
                self._show_errors({"password": password, "again": again}, result)
                return False
            self._show_errors({"password": password, "again": again}, {})
            if result is not None:
                problem.show(result)
                return False
            self.ctx.notify(self.t("admin.users.password_reset", name=name))
            return True

        self._dialog(
            self.t("admin.users.reset_password", name=name),
            [muted(self.t("admin.users.reset_hint", name=name), size=13), password, again],
            self.t("admin.users.reset_ok"),
            submit,
        )

    def _toggle_user(self, user: User) -> None:
        name = user["username"]
        disable = not user["disabled"]
        verb = "disable" if disable else "enable"
        self._confirm(
            self.t(f"admin.users.{verb}", name=name),
            self.t(f"admin.users.{verb}_confirm", name=name),
            self.t(f"admin.users.{verb}_ok"),
            lambda: self.state.set_disabled(name, disable),
            self.t(f"admin.users.{verb}_done", name=name),
        )

    def _delete_user(self, user: User) -> None:
        name = user["username"]
        self._confirm(
            self.t("admin.users.delete", name=name),
            self.t("admin.users.delete_confirm", name=name),
            self.t("admin.delete"),
            lambda: self.state.delete_user(name),
            self.t("admin.users.deleted", name=name),
        )

    # roles
    def _new_role(self) -> None:
        self._role_form(None)

    def _role_form(self, role: Role | None) -> None:
        name = self._field(
            self.t("admin.roles.name"),
            value=role["name"] if role else "",
            disabled=role is not None,
            autofocus=role is None,
        )
        description = self._field(
            self.t("admin.roles.description"),
            value=role["description"] if role else "",
        )
        held = set(role["scopes"]) if role else set()
        boxes = {
            scope: ft.Checkbox(
                label=f"{self.t(f'admin.scope.{scope}')} ({scope})", value=scope in held
            )
            for scope in SCOPES
        }
        scope_error = ft.Text("", color=ft.Colors.ERROR, size=12, visible=False)

        async def submit(problem: ProblemBox) -> bool:
            scopes: list[Scope] = [scope for scope, box in boxes.items() if box.value]
            errors = check_role(name.value.strip(), scopes, description.value, new=role is None)
            self._show_errors({"name": name, "description": description}, errors)
            scope_error.visible = "scopes" in errors
            scope_error.value = self.t(errors["scopes"]) if "scopes" in errors else ""
            if errors:
                return False
            if role is None:
                refused = await self.state.create_role(
                    name.value.strip(), scopes, description.value
                )
            else:
                refused = await self.state.update_role(role["name"], scopes, description.value)
            if refused is not None:
                problem.show(refused)
                return False
            self.ctx.notify(self.t("admin.roles.saved", name=name.value.strip()))
            return True

        self._dialog(
            self.t("admin.roles.edit", name=role["name"]) if role else self.t("admin.roles.new"),
            [
                name,
                description,
                ft.Text(self.t("admin.roles.scopes"), weight=ft.FontWeight.W_600),
                ft.Column(list(boxes.values()), spacing=0),
                scope_error,
            ],
            self.t("admin.save") if role else self.t("admin.create"),
            submit,
        )

    def _delete_role(self, role: Role) -> None:
        name = role["name"]
        self._confirm(
            self.t("admin.roles.delete", name=name),
            self.t("admin.roles.delete_confirm", name=name),
            self.t("admin.delete"),
            lambda: self.state.delete_role(name),
            self.t("admin.roles.deleted", name=name),
        )

    # tokens
    def _new_token(self) -> None:
        description = self._field(self.t("admin.tokens.description"), autofocus=True)
        ttl = ft.Dropdown(
            label=self.t("admin.tokens.ttl"),
            value=str(DEFAULT_TTL),
            options=[
                ft.DropdownOption(key=str(seconds), text=self.t(f"admin.tokens.ttl.{seconds}"))
                for seconds in TTL_CHOICES
            ],
            expand=True,
            dense=True,
        )
        uses = self._field(
            self.t("admin.tokens.max_uses"), helper=self.t("admin.tokens.unlimited"), number=True
        )
        none = "-"
        group = ft.Dropdown(
            label=self.t("admin.tokens.group"),
            value=none,
            options=[
                ft.DropdownOption(key=none, text=self.t("admin.tokens.no_group")),
                *(ft.DropdownOption(key=g, text=g) for g in self.state.group_names),
            ],
            expand=True,
            dense=True,
        )
        labels = self._field(
            self.t("admin.tokens.labels"),
            hint="env=prod, tier=web",
            helper=self.t("admin.tokens.labels_hint"),
        )

        async def submit(problem: ProblemBox) -> bool:
            chosen = group.value if group.value and group.value != none else ""
            body, errors = check_token(
                int(ttl.value or DEFAULT_TTL),
                uses.value,
                chosen,
                labels.value,
                description.value.strip(),
            )
            self._show_errors(
                {
                    "ttl": ttl,
                    "uses": uses,
                    "group": group,
                    "labels": labels,
                    "description": description,
                },
                errors,
            )
            if errors:
                return False
            refused = await self.state.create_token(body)
            if refused is not None:
                problem.show(refused)
                return False
            self.ctx.notify(self.t("admin.tokens.created"))
            return True

        self._dialog(
            self.t("admin.tokens.new"),
            [description, ft.Row([ttl]), uses, ft.Row([group]), labels],
            self.t("admin.create"),
            submit,
        )

    def _revoke_token(self, token: EnrollmentToken) -> None:
        label = token["description"] or token["id"][:8]
        self._confirm(
            self.t("admin.tokens.revoke"),
            self.t("admin.tokens.revoke_confirm", name=label),
            self.t("admin.tokens.revoke_ok"),
            lambda: self.state.revoke_token(token["id"]),
            self.t("admin.tokens.revoked", name=label),
        )

    # groups
    def _new_group(self) -> None:
        self._group_form(None)

    def _group_form(self, group: Group | None) -> None:
        name = self._field(
            self.t("admin.groups.name"), value=group["name"] if group else "", autofocus=True
        )
        description = self._field(
            self.t("admin.groups.description"),
            value=group["description"] if group else "",
            lines=2,
        )

        async def submit(problem: ProblemBox) -> bool:
            new_name = name.value.strip()
            errors = check_group(new_name, description.value)
            self._show_errors({"name": name, "description": description}, errors)
            if errors:
                return False
            if group is None:
                refused = await self.state.create_group(new_name, description.value)
            else:
                refused = await self.state.update_group(group["name"], new_name, description.value)
            if refused is not None:
                problem.show(refused)
                return False
            self.ctx.notify(self.t("admin.groups.saved", name=new_name))
            return True

        content: list[ft.Control] = [name, description]
        if group is not None and group["node_count"]:
            content.insert(
                0, muted(self.t("admin.groups.rename_hint", count=group["node_count"]), size=13)
            )
        self._dialog(
            self.t("admin.groups.edit", name=group["name"])
            if group
            else self.t("admin.groups.new"),
            content,
            self.t("admin.save") if group else self.t("admin.create"),
            submit,
        )

    def _delete_group(self, group: Group) -> None:
        name = group["name"]
        self._confirm(
            self.t("admin.groups.delete", name=name),
            self.t("admin.groups.delete_confirm", name=name),
            self.t("admin.delete"),
            lambda: self.state.delete_group(name),
            self.t("admin.groups.deleted", name=name),
        )

    # service clients
    def _new_client(self) -> None:
        self._client_form(None)

    def _client_form(self, client: ServiceClient | None) -> None:
        cid = self._field(
            self.t("admin.clients.id"),
            value=client["client_id"] if client else "",
            disabled=client is not None,
            autofocus=client is None,
            helper=self.t("admin.clients.id_hint"),
        )
        role = self._role_dropdown(client["role"] if client else "viewer")
        description = self._field(
            self.t("admin.clients.description"),
            value=client["description"] if client else "",
        )

        async def submit(problem: ProblemBox) -> bool:
            values = (cid.value.strip(), role.value or "", description.value)
            errors = check_client(*values)
            self._show_errors({"client_id": cid, "role": role, "description": description}, errors)
            if errors:
                return False
            if client is None:
                refused = await self.state.create_client(*values)
            else:
                refused = await self.state.update_client(*values)
            if refused is not None:
                problem.show(refused)
                return False
            self.ctx.notify(self.t("admin.clients.saved", name=values[0]))
            return True

        self._dialog(
            self.t("admin.clients.edit", name=client["client_id"])
            if client
            else self.t("admin.clients.new"),
            [cid, ft.Row([role]), description],
            self.t("admin.save") if client else self.t("admin.create"),
            submit,
        )

    def _delete_client(self, client: ServiceClient) -> None:
        cid = client["client_id"]
        self._confirm(
            self.t("admin.clients.delete", name=cid),
            self.t("admin.clients.delete_confirm", name=cid),
            self.t("admin.delete"),
            lambda: self.state.delete_client(cid),
            self.t("admin.clients.deleted", name=cid),
        )

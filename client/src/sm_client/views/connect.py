"""The connect screen: core URL and secret key, or user name and password.

Shown whenever no session is signed in. Renders :class:`~sm_client.state.session.Session`:
the form, the failure's message, the fingerprint to confirm on a first
password login, and the remembered servers (tap one to fill the form, or to
sign in at once when its login is remembered).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import flet as ft

from sm_client.i18n import Translator
from sm_client.state.session import KnownServer, Phase, Session
from sm_client.views import ids
from sm_client.views.styled import mono_text

MAX_WIDTH = 460


class ConnectScreen:
    """Not a shell screen: the app shows it instead of the shell while signed out."""

    def __init__(self, page: ft.Page, session: Session, i18n: Translator) -> None:
        self.page = page
        self.session = session
        self.i18n = i18n
        self.mode = "key"
        self.server = ft.TextField(
            value=session.suggested_server(),
            prefix_icon=ft.Icons.LINK,
            on_submit=self._submit,
        )
        self.key = ft.TextField(
            helper_max_lines=2,
            password=True,
            can_reveal_password=True,
            prefix_icon=ft.Icons.KEY_OUTLINED,
            on_submit=self._submit,
        )
        self.username = ft.TextField(prefix_icon=ft.Icons.PERSON_OUTLINE, on_submit=self._submit)
        self.password = ft.TextField(
            password=True,
            can_reveal_password=True,
            prefix_icon=ft.Icons.LOCK_OUTLINE,
            on_submit=self._submit,
        )
        self.remember = ft.Checkbox(value=False)
        self.root = ft.Semantics(identifier=ids.screen("connect"), content=ft.Container())
        self._stops = [session.listen(self._refresh), i18n.listen(self._refresh)]
        self.render()

    def control(self) -> ft.Control:
        return self.root

    def close(self) -> None:
        for stop in self._stops:
            stop()

    # --- actions ----------------------------------------------------------------------

    async def _submit(self, _: ft.Event[ft.TextField] | ft.Event[ft.Button] | None = None) -> None:
        if self.session.phase is Phase.CONNECTING:
            return
        server = self.server.value or ""
        if self.mode == "key":
            await self.session.connect_key(
                server, self.key.value or "", remember=bool(self.remember.value)
            )
        else:
            await self.session.connect_password(
                server,
                self.username.value or "",
                self.password.value or "",
                remember=bool(self.remember.value),
            )

    async def _trust(self, _: ft.Event[ft.Button]) -> None:
        await self.session.trust()

    def _cancel(self, _: ft.Event[ft.TextButton]) -> None:
        self.session.cancel()

    def _set_mode(self, mode: str) -> Callable[[], None]:
        def pick() -> None:
            self.mode = mode
            self._refresh()

        return pick

    def _pick(self, known: KnownServer) -> Callable[[ft.Event[ft.Container]], None]:
        def pick(_: ft.Event[ft.Container]) -> None:
            self.server.value = known.origin
            self.mode = known.method
            if known.method == "password":
                self.username.value = known.username
            if known.remembers_login:
                self.page.run_task(self.session.resume, known)
            self._refresh()

        return pick

    def _forget(self, known: KnownServer) -> Callable[[ft.Event[ft.IconButton]], None]:
        def forget(_: ft.Event[ft.IconButton]) -> None:
            self.page.run_task(self.session.forget, known.origin)

        return forget

    # --- rendering --------------------------------------------------------------------

    def _refresh(self) -> None:
        self.render()
        if self.root.page is not None:
            self.root.update()

    def render(self) -> None:
        t = self.i18n.t
        self.server.label = t("connect.server")
        self.server.hint_text = t("connect.server_hint")
        self.key.label = t("connect.key")
        self.key.helper = t("connect.key_help")
        self.username.label = t("connect.username")
        self.password.label = t("connect.password")
        self.remember.label = t("connect.remember")
        busy = self.session.phase is Phase.CONNECTING
        for field in (self.server, self.key, self.username, self.password):
            field.disabled = busy

        if self.session.phase is Phase.CONFIRM and self.session.pending is not None:
            body = self._confirm()
        else:
            body = self._form(busy)
        card = ft.Card(
            ft.Container(body, padding=ft.Padding.symmetric(horizontal=24, vertical=24)),
            elevation=0,
            bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
        )
        column: list[ft.Control] = [self._heading(), card]
        if self.session.servers and self.session.phase is not Phase.CONFIRM:
            column.append(self._known())
        self.root.content = ft.Container(
            ft.Column(
                [
                    ft.Container(
                        ft.Column(
                            column,
                            spacing=20,
                            tight=True,
                            horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
                        ),
                        width=MAX_WIDTH,
                        padding=ft.Padding.symmetric(horizontal=16, vertical=32),
                    )
                ],
                horizontal_alignment=ft.CrossAxisAlignment.CENTER,
                scroll=ft.ScrollMode.AUTO,
                expand=True,
            ),
            expand=True,
            alignment=ft.Alignment.TOP_CENTER,
            bgcolor=ft.Colors.SURFACE,
        )

    def _heading(self) -> ft.Control:
        t = self.i18n.t
        return ft.Column(
            [
                ft.Container(
                    ft.Icon(ft.Icons.HUB_OUTLINED, size=32, color=ft.Colors.ON_PRIMARY_CONTAINER),
                    width=64,
                    height=64,
                    border_radius=20,
                    bgcolor=ft.Colors.PRIMARY_CONTAINER,
                    alignment=ft.Alignment.CENTER,
                ),
                ft.Text(
                    t("shell.title"), size=14, color=ft.Colors.PRIMARY, weight=ft.FontWeight.W_600
                ),
                ft.Text(t("connect.title"), size=26, weight=ft.FontWeight.W_600),
                ft.Text(t("connect.subtitle"), color=ft.Colors.ON_SURFACE_VARIANT),
            ],
            spacing=6,
            tight=True,
        )

    def _mode_button(self, mode: str, identifier: str, key: str, icon: ft.IconData) -> ft.Control:
        on_click = self._set_mode(mode)
        button: ft.Control
        if mode == self.mode:
            button = ft.FilledTonalButton(
                self.i18n.t(key), icon=ft.Icons.CHECK, on_click=on_click, expand=True
            )
        else:
            button = ft.TextButton(self.i18n.t(key), icon=icon, on_click=on_click, expand=True)
        return ft.Semantics(
            identifier=identifier, selected=mode == self.mode, content=button, expand=True
        )

    def _form(self, busy: bool) -> ft.Control:
        t = self.i18n.t
        modes = ft.Container(
            ft.Row(
                [
                    self._mode_button(
                        "key", ids.CONNECT_MODE_KEY, "connect.mode.key", ft.Icons.KEY_OUTLINED
                    ),
                    self._mode_button(
                        "password",
                        ids.CONNECT_MODE_PASSWORD,
                        "connect.mode.password",
                        ft.Icons.PERSON_OUTLINE,
                    ),
                ],
                spacing=4,
            ),
            padding=4,
            border_radius=24,
            border=ft.Border.all(1, ft.Colors.OUTLINE_VARIANT),
        )
        fields: list[ft.Control] = [
            modes,
            ft.Semantics(identifier=ids.CONNECT_SERVER, content=self.server),
        ]
        if self.mode == "key":
            fields.append(ft.Semantics(identifier=ids.CONNECT_KEY, content=self.key))
        else:
            fields += [
                ft.Semantics(identifier=ids.CONNECT_USERNAME, content=self.username),
                ft.Semantics(identifier=ids.CONNECT_PASSWORD, content=self.password),
            ]
        fields.append(
            ft.Column(
                [
                    ft.Semantics(identifier=ids.CONNECT_REMEMBER, content=self.remember),
                    ft.Text(
                        t("connect.remember_help"), size=12, color=ft.Colors.ON_SURFACE_VARIANT
                    ),
                ],
                spacing=0,
                tight=True,
            )
        )
        failure = self.session.failure
        if failure is not None:
            fields.append(self._failure(failure.kind.value, failure.detail))
        submit = ft.FilledButton(
            t("connect.connecting") if busy else t("connect.submit"),
            icon=None if busy else ft.Icons.LOGIN,
            on_click=self._submit,
            disabled=busy,
            height=44,
        )
        fields.append(
            ft.Row(
                [
                    ft.ProgressRing(width=20, height=20, stroke_width=2, visible=busy),
                    ft.Semantics(identifier=ids.CONNECT_SUBMIT, content=submit),
                ],
                alignment=ft.MainAxisAlignment.END,
            )
        )
        return ft.Column(
            fields, spacing=16, tight=True, horizontal_alignment=ft.CrossAxisAlignment.STRETCH
        )

    def _failure(self, kind: str, detail: str) -> ft.Control:
        t = self.i18n.t
        title = t(f"connect.failure.{kind}")
        hint_key = f"connect.failure.hint.{kind}"
        hint = t(hint_key)
        lines: list[ft.Control] = [
            ft.Text(title, weight=ft.FontWeight.W_600, color=ft.Colors.ON_ERROR_CONTAINER)
        ]
        if hint != hint_key:
            lines.append(ft.Text(hint, size=13, color=ft.Colors.ON_ERROR_CONTAINER))
        if detail:
            lines.append(
                ft.Text(
                    detail,
                    size=12,
                    color=ft.Colors.ON_ERROR_CONTAINER,
                    max_lines=6,
                    overflow=ft.TextOverflow.ELLIPSIS,
                )
            )
        return ft.Semantics(
            identifier=ids.CONNECT_ERROR,
            label=f"{title}: {detail}" if detail else title,
            live_region=True,
            content=ft.Container(
                ft.Row(
                    [
                        ft.Icon(ft.Icons.ERROR_OUTLINE, color=ft.Colors.ON_ERROR_CONTAINER),
                        ft.Column(lines, spacing=4, tight=True, expand=True),
                    ],
                    vertical_alignment=ft.CrossAxisAlignment.START,
                ),
                padding=12,
                border_radius=12,
                bgcolor=ft.Colors.ERROR_CONTAINER,
            ),
        )

    def _confirm(self) -> ft.Control:
        t = self.i18n.t
        pending = self.session.pending
        assert pending is not None
        return ft.Column(
            [
                ft.Row(
                    [
                        ft.Icon(ft.Icons.VERIFIED_USER_OUTLINED, color=ft.Colors.PRIMARY),
                        ft.Text(t("connect.confirm.title"), size=18, weight=ft.FontWeight.W_600),
                    ]
                ),
                ft.Text(t("connect.confirm.body", server=pending.origin)),
                ft.Semantics(
                    identifier=ids.CONNECT_FINGERPRINT,
                    label=pending.fingerprint,
                    content=ft.Container(
                        ft.Column(
                            [
                                ft.Text(
                                    t("connect.confirm.fingerprint"),
                                    size=12,
                                    color=ft.Colors.ON_SURFACE_VARIANT,
                                ),
                                mono_text(
                                    pending.fingerprint,
                                    size=13,
                                ),
                            ],
                            spacing=4,
                            tight=True,
                        ),
                        padding=12,
                        border_radius=12,
                        bgcolor=ft.Colors.SURFACE_CONTAINER_HIGHEST,
                    ),
                ),
                ft.Column(
                    [
                        ft.Semantics(
                            identifier=ids.CONNECT_TRUST,
                            content=ft.FilledButton(
                                t("connect.confirm.trust"),
                                icon=ft.Icons.VERIFIED_OUTLINED,
                                on_click=self._trust,
                                height=44,
                            ),
                        ),
                        ft.Semantics(
                            identifier=ids.CONFIRM_CANCEL,
                            content=ft.TextButton(
                                t("connect.confirm.cancel"), on_click=self._cancel
                            ),
                        ),
                    ],
                    spacing=8,
                    tight=True,
                    horizontal_alignment=ft.CrossAxisAlignment.STRETCH,
                ),
            ],
            spacing=16,
            tight=True,
        )

    def _known(self) -> ft.Control:
        t = self.i18n.t
        tiles: list[ft.Control] = []
        for index, known in enumerate(self.session.servers):
            how = (
                t("connect.known_key")
                if known.method == "key"
                else t("connect.known_user", username=known.username)
            )
            if known.remembers_login:
                how += " · " + t("connect.known_remembered")
            host = urlsplit(known.origin).netloc
            tiles.append(
                ft.Semantics(
                    identifier=ids.known_server(index),
                    label=f"{host} {how}",
                    content=ft.Container(
                        ft.Row(
                            [
                                ft.Icon(ft.Icons.DNS_OUTLINED, color=ft.Colors.ON_SURFACE_VARIANT),
                                ft.Column(
                                    [
                                        ft.Text(host, weight=ft.FontWeight.W_500),
                                        ft.Text(how, size=12, color=ft.Colors.ON_SURFACE_VARIANT),
                                        mono_text(
                                            known.fingerprint[:23] + "…",
                                            size=11,
                                            color=ft.Colors.ON_SURFACE_VARIANT,
                                        ),
                                    ],
                                    spacing=2,
                                    tight=True,
                                    expand=True,
                                ),
                                ft.IconButton(
                                    ft.Icons.DELETE_OUTLINE,
                                    tooltip=t("connect.forget", server=host),
                                    on_click=self._forget(known),
                                ),
                            ],
                            spacing=16,
                        ),
                        on_click=self._pick(known),
                        padding=ft.Padding.only(left=16, right=4, top=8, bottom=8),
                        border_radius=12,
                    ),
                )
            )
        return ft.Column(
            [
                ft.Text(
                    t("connect.known"),
                    size=13,
                    weight=ft.FontWeight.W_600,
                    color=ft.Colors.ON_SURFACE_VARIANT,
                ),
                *tiles,
            ],
            spacing=4,
            tight=True,
        )

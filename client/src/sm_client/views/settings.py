"""The settings screen: theme, language, the connected server, signing out."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import flet as ft

from sm_client.i18n import Language
from sm_client.state.preferences import Preferences, Theme
from sm_client.state.session import Session
from sm_client.views import ids
from sm_client.views.context import RouteParams, ScreenContext
from sm_client.views.fonts import CJK_FONT
from sm_client.views.styled import mono_text

# Each language named in itself, whatever the current language.
LANGUAGE_NAMES = {Language.EN: "English", Language.ZH: "简体中文"}
THEME_ICONS = {
    Theme.LIGHT: ft.Icons.LIGHT_MODE_OUTLINED,
    Theme.DARK: ft.Icons.DARK_MODE_OUTLINED,
    Theme.SYSTEM: ft.Icons.BRIGHTNESS_AUTO_OUTLINED,
}


def _client_version() -> str:
    try:
        return version("sm-client")
    except PackageNotFoundError:
        return "dev"


class SettingsScreen:
    def __init__(
        self,
        ctx: ScreenContext,
        params: RouteParams,
        *,
        prefs: Preferences,
        session: Session,
    ) -> None:
        self.ctx = ctx
        self.prefs = prefs
        self.session = session
        self.root = ft.Semantics(identifier=ids.screen("settings"), content=ft.Container())
        self._stops: list[Callable[[], None]] = []
        self.render()

    def control(self) -> ft.Control:
        return self.root

    async def enter(self) -> None:
        self._stops = [self.prefs.listen(self._refresh), self.ctx.i18n.listen(self._refresh)]
        if self.session.feed is not None:
            self._stops.append(self.session.feed.listen(self._refresh))
        self._refresh()

    def leave(self) -> None:
        for stop in self._stops:
            stop()
        self._stops = []

    # --- actions ----------------------------------------------------------------------

    def _theme(self, theme: Theme) -> Callable[[], None]:
        def pick() -> None:
            self.ctx.page.run_task(self.prefs.set_theme, theme)

        return pick

    def _language(self, language: Language) -> Callable[[], None]:
        def pick() -> None:
            self.ctx.page.run_task(self.prefs.set_language, language)

        return pick

    async def _sign_out(self) -> None:
        await self.session.sign_out()

    # --- rendering --------------------------------------------------------------------

    def _refresh(self) -> None:
        self.render()
        if self.root.page is not None:
            self.root.update()

    def _choice(
        self,
        identifier: str,
        text: str,
        icon: ft.IconData | None,
        selected: bool,
        on_click: Callable[[], None],
        font: str | None = None,
    ) -> ft.Control:
        button: ft.Control
        label = ft.Text(text, font_family=font)
        if selected:
            button = ft.FilledTonalButton(label, icon=ft.Icons.CHECK, on_click=on_click)
        else:
            button = ft.OutlinedButton(label, icon=icon, on_click=on_click)
        return ft.Semantics(identifier=identifier, selected=selected, content=button)

    def _section(self, title: str, icon: ft.IconData, body: list[ft.Control]) -> ft.Control:
        return ft.Card(
            ft.Container(
                ft.Column(
                    [
                        ft.Row(
                            [
                                ft.Icon(icon, color=ft.Colors.PRIMARY, size=20),
                                ft.Text(title, size=16, weight=ft.FontWeight.W_600),
                            ],
                            spacing=8,
                        ),
                        *body,
                    ],
                    spacing=16,
                    tight=True,
                ),
                padding=20,
            ),
            elevation=0,
            bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
            col={"xs": 12, "lg": 6},
        )

    def _field(self, label: str, value: str, *, mono: bool = False) -> ft.Control:
        return ft.Column(
            [
                ft.Text(label, size=12, color=ft.Colors.ON_SURFACE_VARIANT),
                # (inside a Semantics label a selectable text hides it: only ids are selectable)
                mono_text(value, size=13, selectable=True) if mono else ft.Text(value, size=14),
            ],
            spacing=2,
            tight=True,
        )

    def render(self) -> None:
        t = self.ctx.i18n.t
        themes = ft.Row(
            [
                self._choice(
                    ids.settings_theme(theme.value),
                    t(f"settings.theme.{theme.value}"),
                    THEME_ICONS[theme],
                    self.prefs.theme is theme,
                    self._theme(theme),
                )
                for theme in Theme
            ],
            wrap=True,
            spacing=8,
            run_spacing=8,
        )
        languages = ft.Row(
            [
                self._choice(
                    ids.settings_language(language.value),
                    LANGUAGE_NAMES[language],
                    ft.Icons.TRANSLATE,
                    self.prefs.language is language,
                    self._language(language),
                    # drawn in the bundled font even while the app speaks English
                    font=CJK_FONT if language is Language.ZH else None,
                )
                for language in Language
            ],
            wrap=True,
            spacing=8,
            run_spacing=8,
        )
        appearance = self._section(
            t("settings.appearance"),
            ft.Icons.PALETTE_OUTLINED,
            [
                ft.Text(t("settings.theme"), size=13, color=ft.Colors.ON_SURFACE_VARIANT),
                themes,
                ft.Text(t("settings.language"), size=13, color=ft.Colors.ON_SURFACE_VARIANT),
                languages,
            ],
        )
        sections: list[ft.Control] = [appearance, self._server()]
        self.root.content = ft.Container(
            ft.Column(
                [
                    ft.ResponsiveRow(sections, spacing=16, run_spacing=16),
                    ft.Text(
                        t("settings.version", version=_client_version()),
                        size=12,
                        color=ft.Colors.ON_SURFACE_VARIANT,
                    ),
                ],
                spacing=16,
                scroll=ft.ScrollMode.AUTO,
                expand=True,
            ),
            padding=ft.Padding.only(left=16, right=16, bottom=16),
            expand=True,
        )

    def _server(self) -> ft.Control:
        t = self.ctx.i18n.t
        server = self.session.server
        origin = server.origin if server is not None else ""
        who = self.session.identity or t("settings.server.identity_key")
        live = self.ctx.feed.connected
        scopes = sorted(self.ctx.api.scopes)
        body: list[ft.Control] = [
            ft.Semantics(
                identifier=ids.SETTINGS_SERVER,
                label=f"{origin} · {who}",
                content=ft.Column(
                    [
                        self._field(t("settings.server.url"), origin),
                        self._field(t("settings.server.identity"), who),
                    ],
                    spacing=12,
                    tight=True,
                ),
            ),
            self._field(
                t("settings.server.fingerprint"),
                server.fingerprint if server is not None else "",
                mono=True,
            ),
            ft.Column(
                [
                    ft.Text(
                        t("settings.server.scopes"), size=12, color=ft.Colors.ON_SURFACE_VARIANT
                    ),
                    ft.Row(
                        [
                            ft.Container(
                                ft.Text(scope, size=12),
                                padding=ft.Padding.symmetric(horizontal=8, vertical=3),
                                border_radius=8,
                                bgcolor=ft.Colors.SECONDARY_CONTAINER,
                            )
                            for scope in scopes
                        ],
                        wrap=True,
                        spacing=6,
                        run_spacing=6,
                    ),
                ],
                spacing=6,
                tight=True,
            ),
            ft.Row(
                [
                    ft.Icon(
                        ft.Icons.CIRCLE,
                        size=10,
                        color=ft.Colors.GREEN if live else ft.Colors.AMBER,
                    ),
                    ft.Text(
                        t("settings.server.live")
                        + ": "
                        + t("settings.server.live_on" if live else "settings.server.live_off"),
                        size=13,
                    ),
                ],
                spacing=8,
            ),
            ft.Text(
                t(
                    "settings.server.remembered"
                    if server is not None and server.remembers_login
                    else "settings.server.session_only"
                ),
                size=12,
                color=ft.Colors.ON_SURFACE_VARIANT,
            ),
            ft.Row(
                [
                    ft.Semantics(
                        identifier=ids.SETTINGS_SIGN_OUT,
                        content=ft.OutlinedButton(
                            t("settings.sign_out"), icon=ft.Icons.LOGOUT, on_click=self._sign_out
                        ),
                    )
                ],
                alignment=ft.MainAxisAlignment.END,
            ),
        ]
        return self._section(t("settings.server"), ft.Icons.DNS_OUTLINED, body)

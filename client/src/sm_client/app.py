"""Composition: one :class:`App` per page (per browser session on the web).

Preferences and remembered servers come from the client's storage
(``ft.SharedPreferences``); the :class:`~sm_client.state.session.Session`
signs in; while signed out the page shows the connect screen, once signed in
the :class:`~sm_client.views.shell.Shell` and the screen of the route. Nothing
lives in module globals: the web server runs many sessions in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import flet as ft

from sm_client.i18n import Language, Translator
from sm_client.state.preferences import Preferences, Theme
from sm_client.state.session import Phase, Session
from sm_client.views.connect import ConnectScreen
from sm_client.views.context import RouteParams, Screen, ScreenContext
from sm_client.views.fonts import CJK_FONT, FONTS
from sm_client.views.settings import SettingsScreen
from sm_client.views.shell import Shell

log = logging.getLogger(__name__)

SEED: Final = "#2F6FB3"  # a calm steel blue: Material 3 derives both schemes from it
THEME_MODES: Final = {
    Theme.LIGHT: ft.ThemeMode.LIGHT,
    Theme.DARK: ft.ThemeMode.DARK,
    Theme.SYSTEM: ft.ThemeMode.SYSTEM,
}


class ClientStorage:
    """The :class:`~sm_client.state.preferences.Storage` of a page: ``ft.SharedPreferences``
    (the browser's local storage on the web). Values are strings; a storage that does
    not answer reads as empty."""

    def __init__(self) -> None:
        self.prefs = ft.SharedPreferences()

    async def get(self, key: str) -> str | None:
        try:
            value = await self.prefs.get(key)
        except Exception:  # the client may not offer storage (yet): start afresh
            log.warning("client storage unavailable for %s", key, exc_info=True)
            return None
        return value if isinstance(value, str) else None

    async def set(self, key: str, value: str) -> None:
        try:
            await self.prefs.set(key, value)
        except Exception:
            log.warning("client storage refused %s", key, exc_info=True)

    async def remove(self, key: str) -> None:
        try:
            await self.prefs.remove(key)
        except Exception:
            log.warning("client storage refused removing %s", key, exc_info=True)


class App:
    def __init__(self, page: ft.Page, default_server: str = "") -> None:
        self.page = page
        self.i18n = Translator()
        self.storage = ClientStorage()
        self.prefs = Preferences(self.storage, self.i18n)
        self.session = Session(self.storage, default_server)
        self.connect: ConnectScreen | None = None
        self.shell: Shell | None = None
        # Where to go once signed in (the address the browser opened).
        self.wanted = "/"

    async def start(self) -> None:
        page = self.page
        page.title = self.i18n.t("shell.title")
        page.padding = 0
        page.spacing = 0
        page.fonts = dict(FONTS)
        self._set_themes()
        page.theme_mode = ft.ThemeMode.SYSTEM
        page.on_route_change = self._on_route
        page.on_resize = self._on_resize
        page.on_close = self._on_close
        page.on_disconnect = self._on_disconnect
        page.on_connect = self._on_connect
        if page.route and page.route not in ("/connect", ""):
            self.wanted = page.route
        self.prefs.listen(self._apply_theme)
        self.i18n.listen(self._retitle)
        self.session.listen(self._on_session)
        await self.prefs.load()
        await self.session.load()
        self._show_connect()
        candidate = self.session.auto_login()
        if candidate is not None:
            await self.session.resume(candidate)

    # --- reacting ---------------------------------------------------------------------

    def _apply_theme(self) -> None:
        mode = THEME_MODES[self.prefs.theme]
        if self.page.theme_mode != mode:
            self.page.theme_mode = mode
            self.page.update()

    def _set_themes(self) -> None:
        """Both themes from the seed; Chinese in the bundled CJK font (Roboto has no hanzi)."""
        font = CJK_FONT if self.i18n.language is Language.ZH else None
        self.page.theme = ft.Theme(color_scheme_seed=SEED, font_family=font)
        self.page.dark_theme = ft.Theme(color_scheme_seed=SEED, font_family=font)

    def _retitle(self) -> None:
        self.page.title = self.i18n.t("shell.title")
        self._set_themes()
        self.page.update()

    def _on_session(self) -> None:
        try:
            self._follow_session()
        except Exception:
            log.exception("the page could not follow the session")

    def _follow_session(self) -> None:
        signed_in = self.session.phase is Phase.SIGNED_IN
        if signed_in and self.shell is None:
            self._show_shell()
        elif not signed_in and self.shell is not None:
            self.shell.close()
            self.shell = None
            self.wanted = "/"
            self._show_connect()

    async def _on_route(self, event: ft.RouteChangeEvent) -> None:
        if self.shell is not None and event.route in ("/connect", ""):
            self.shell.navigate("/")  # signed in already
        elif self.shell is not None:
            await self.shell.show(event.route)
        elif event.route not in ("/connect", ""):
            self.wanted = event.route

    def _on_resize(self, event: ft.PageResizeEvent) -> None:
        if self.shell is not None:
            self.shell.resized(event.width)

    async def _on_disconnect(self, _: ft.Event[ft.Page]) -> None:
        """The browser left (the session lives on for a while): no live socket meanwhile."""
        if self.session.feed is not None:
            await self.session.feed.close()

    def _on_connect(self, _: ft.Event[ft.Page]) -> None:
        """The browser is back: connect again (screens re-sync as after any reconnect)."""
        if self.session.feed is not None:
            self.session.feed.start()

    async def _on_close(self, _: ft.Event[ft.Page]) -> None:
        if self.shell is not None:
            self.shell.close()
        await self.session.sign_out(forget_login=False)

    # --- what the page shows ----------------------------------------------------------

    def _show_connect(self) -> None:
        if self.connect is None:
            self.connect = ConnectScreen(self.page, self.session, self.i18n)
        self.page.controls = [self.connect.control()]
        self.page.update()

    def _settings(self, ctx: ScreenContext, params: RouteParams) -> Screen:
        return SettingsScreen(ctx, params, prefs=self.prefs, session=self.session)

    def _show_shell(self) -> None:
        if self.connect is not None:
            self.connect.close()
            self.connect = None
        shell = Shell(
            self.page, self.session, self.prefs, self.i18n, special={"settings": self._settings}
        )
        self.shell = shell
        self.page.controls = [shell.control()]
        self.page.update()
        wanted = self.wanted
        self.page.run_task(shell.show, wanted)
        if self.page.route != wanted:
            shell.navigate(wanted)


def app_main(default_server: str = "") -> Callable[[ft.Page], Awaitable[None]]:
    """The Flet entry point for one page; ``default_server`` pre-fills the connect screen."""

    async def main(page: ft.Page) -> None:
        await App(page, default_server).start()

    return main

"""The signed-in app's frame: navigation, header, and the screen of the current route.

A navigation rail on windows at least :data:`WIDE` pixels wide, a bottom
navigation bar below that; each destination is wrapped in
``ft.Semantics(identifier=ids.nav(name))``. The header names the screen and
shows the server and whether live updates flow. Routes map to screen classes
(:data:`ROUTES`); a screen is built from a :class:`ScreenContext` and its
:data:`RouteParams`, entered when shown and left when replaced.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import flet as ft

from sm_client.i18n import Translator
from sm_client.live import LiveEvents
from sm_client.state.preferences import Preferences
from sm_client.state.session import Session
from sm_client.views import ids, state_panels
from sm_client.views.admin import AdminScreen
from sm_client.views.audit import AuditScreen
from sm_client.views.commands import CommandRunScreen, CommandsScreen, ComposerScreen
from sm_client.views.context import RouteParams, Screen, ScreenContext
from sm_client.views.dashboard import DashboardScreen
from sm_client.views.node_detail import NodeScreen
from sm_client.views.nodes import NodesScreen

log = logging.getLogger(__name__)

ScreenFactory = Callable[[ScreenContext, RouteParams], Screen]

WIDE: Final = 840  # px: the rail from here on, the bottom bar below

ICONS: Final[dict[str, tuple[ft.IconData, ft.IconData]]] = {
    "dashboard": (ft.Icons.SPACE_DASHBOARD_OUTLINED, ft.Icons.SPACE_DASHBOARD),
    "nodes": (ft.Icons.DNS_OUTLINED, ft.Icons.DNS),
    "commands": (ft.Icons.TERMINAL_OUTLINED, ft.Icons.TERMINAL),
    "audit": (ft.Icons.FACT_CHECK_OUTLINED, ft.Icons.FACT_CHECK),
    "admin": (ft.Icons.ADMIN_PANEL_SETTINGS_OUTLINED, ft.Icons.ADMIN_PANEL_SETTINGS),
    "settings": (ft.Icons.SETTINGS_OUTLINED, ft.Icons.SETTINGS),
}
# The scope a destination needs (hidden without it).
NEEDS: Final[dict[str, str]] = {"audit": "audit:read", "admin": "admin"}


def _needs_the_app(ctx: ScreenContext, params: RouteParams) -> Screen:
    raise LookupError("this screen is built by the app (Shell(special=...))")


@dataclass(frozen=True)
class Route:
    """A route pattern, the destination it belongs to, and the screen showing it."""

    pattern: re.Pattern[str]
    nav: str  # the destination highlighted
    name: str  # which screen (``settings`` is built by the app: it needs the session)
    screen: ScreenFactory


def _route(pattern: str, nav: str, name: str, screen: ScreenFactory) -> Route:
    return Route(re.compile(f"^{pattern}$"), nav, name, screen)


ROUTES: Final = (
    _route(r"/", "dashboard", "dashboard", DashboardScreen),
    _route(r"/nodes", "nodes", "nodes", NodesScreen),
    _route(r"/nodes/(?P<node_id>[^/]+)", "nodes", "node", NodeScreen),
    _route(r"/commands", "commands", "commands", CommandsScreen),
    _route(r"/commands/new", "commands", "composer", ComposerScreen),
    _route(r"/commands/(?P<command_id>[^/]+)", "commands", "command", CommandRunScreen),
    _route(r"/audit", "audit", "audit", AuditScreen),
    _route(r"/admin", "admin", "admin", AdminScreen),
    _route(r"/settings", "settings", "settings", _needs_the_app),
)


def resolve(route: str) -> tuple[Route, RouteParams] | None:
    """The route ``route`` (a path with an optional query) matches, with its parameters."""
    parts = urlsplit(route or "/")
    path = parts.path.rstrip("/") or "/"
    for candidate in ROUTES:
        match = candidate.pattern.match(path)
        if match:
            params: RouteParams = dict(parse_qsl(parts.query, keep_blank_values=True))
            params.update({k: v for k, v in match.groupdict().items() if v is not None})
            return candidate, params
    return None


class _Panel:
    """A screen that only shows a panel (not found, not available)."""

    def __init__(self, control: ft.Control) -> None:
        self._control = control

    def control(self) -> ft.Control:
        return self._control

    async def enter(self) -> None:
        return None

    def leave(self) -> None:
        return None


class Shell:
    """The frame around the screens of a signed-in session."""

    def __init__(
        self,
        page: ft.Page,
        session: Session,
        prefs: Preferences,
        i18n: Translator,
        *,
        special: dict[str, ScreenFactory] | None = None,
    ) -> None:
        assert session.api is not None
        assert session.feed is not None
        self.page = page
        self.session = session
        self.prefs = prefs
        self.i18n = i18n
        self.feed: LiveEvents = session.feed
        self.ctx = ScreenContext(
            page=page,
            api=session.api,
            feed=self.feed,
            i18n=i18n,
            navigate=self.navigate,
            notify=self.notify,
        )
        # Screens built here rather than from the route table's module (settings).
        self.special = special or {}
        self.route = "/"
        self.current: Screen | None = None
        self.nav_name = "dashboard"
        self.title_key = "shell.nav.dashboard"
        self.wide = (page.width or 1440) >= WIDE
        self.content = ft.Container(expand=True)
        self.root = ft.Container(expand=True, bgcolor=ft.Colors.SURFACE)
        self._stops = [i18n.listen(self._relabel), self.feed.listen(self._relabel)]
        self._layout()

    # --- what screens call ------------------------------------------------------------

    def navigate(self, route: str) -> None:
        """Go to ``route`` (the browser's address and history follow)."""
        self.page.run_task(self.page.push_route, route)

    def notify(self, text: str) -> None:
        self.page.show_dialog(
            ft.SnackBar(
                ft.Semantics(identifier=ids.SNACK, label=text, content=ft.Text(text)),
                behavior=ft.SnackBarBehavior.FLOATING,
                show_close_icon=True,
            )
        )

    # --- routing ----------------------------------------------------------------------

    def destinations(self) -> list[str]:
        """The destinations the token's scopes allow."""
        api = self.ctx.api
        return [name for name in ids.SCREENS if name not in NEEDS or api.may(NEEDS[name])]

    def _build(self, route: str) -> tuple[str, str, Screen]:
        """(destination, title key, screen) for ``route``; a panel when it cannot be shown."""
        found = resolve(route)
        if found is None:
            panel = state_panels.error(
                self.i18n,
                self.i18n.t("shell.not_found"),
                self.i18n.t("shell.not_found_detail", route=route),
            )
            return self.nav_name, "shell.not_found", _Panel(panel)
        target, params = found
        title = f"shell.nav.{target.nav}"
        if target.nav in NEEDS and not self.ctx.api.may(NEEDS[target.nav]):
            panel = state_panels.error(
                self.i18n, self.i18n.t("shell.admin_only"), self.i18n.t("shell.admin_only_detail")
            )
            return target.nav, title, _Panel(panel)
        try:
            factory = self.special.get(target.name, target.screen)
            return target.nav, title, factory(self.ctx, params)
        except Exception as exc:  # a screen that cannot be built must not end the session
            log.exception("cannot build the screen for %s", route)
            panel = state_panels.error(
                self.i18n,
                self.i18n.t("shell.missing"),
                self.i18n.t("shell.missing_detail", screen=target.name, error=str(exc)),
            )
            return target.nav, title, _Panel(panel)

    async def show(self, route: str) -> None:
        """Replace the current screen by ``route``'s."""
        log.debug("showing %s", route)
        previous, self.current = self.current, None
        if previous is not None:
            try:
                previous.leave()
            except Exception:
                log.exception("leaving %s failed", self.route)
        self.route = route
        self.nav_name, self.title_key, screen = self._build(route)
        self.current = screen
        self.content.content = screen.control()
        self._layout()
        self.page.update()
        log.debug("shown %s", route)
        try:
            await screen.enter()
        except Exception:
            log.exception("entering %s failed", route)
        log.debug("entered %s", route)

    def close(self) -> None:
        for stop in self._stops:
            stop()
        if self.current is not None:
            try:
                self.current.leave()
            except Exception:
                log.exception("leaving %s failed", self.route)
            self.current = None

    # --- layout -----------------------------------------------------------------------

    def control(self) -> ft.Control:
        return self.root

    def resized(self, width: float) -> None:
        wide = width >= WIDE
        if wide != self.wide:
            self.wide = wide
            self._layout()
            self.root.update()

    def _relabel(self) -> None:
        self._layout()
        if self.root.page is not None:
            self.root.update()

    def _layout(self) -> None:
        header = self._header()
        body = ft.Column([header, self.content], expand=True, spacing=0)
        if self.wide:
            self.root.content = ft.Row(
                [self._rail(), ft.VerticalDivider(width=1), body], expand=True, spacing=0
            )
        else:
            self.root.content = ft.Column([body, self._bar()], expand=True, spacing=0)

    def _header(self) -> ft.Control:
        live = self.feed.connected
        if live:
            state = "shell.live"
        else:
            state = "shell.reconnecting" if self.feed.connections else "shell.connecting"
        status = ft.Semantics(
            label=self.i18n.t(state),
            content=ft.Container(
                ft.Row(
                    [
                        ft.Container(
                            width=8,
                            height=8,
                            border_radius=4,
                            bgcolor=ft.Colors.GREEN if live else ft.Colors.AMBER,
                        ),
                        ft.Text(
                            self.i18n.t(state),
                            size=12,
                            color=ft.Colors.ON_SURFACE_VARIANT,
                        ),
                    ],
                    spacing=6,
                    tight=True,
                ),
                padding=ft.Padding.symmetric(horizontal=10, vertical=4),
                border_radius=12,
                bgcolor=ft.Colors.SURFACE_CONTAINER_HIGH,
            ),
        )
        server = self.session.server
        host = urlsplit(server.origin).netloc if server is not None else ""
        who = self.session.identity or self.i18n.t("settings.server.identity_key")
        items: list[ft.Control] = [
            ft.Text(
                self.i18n.t(self.title_key),
                size=20 if self.wide else 18,
                weight=ft.FontWeight.W_600,
                expand=True,
                max_lines=1,
                overflow=ft.TextOverflow.ELLIPSIS,
            ),
        ]
        if self.wide:
            items.append(
                ft.Row(
                    [
                        ft.Icon(ft.Icons.DNS_OUTLINED, size=16, color=ft.Colors.ON_SURFACE_VARIANT),
                        ft.Text(host, size=13, color=ft.Colors.ON_SURFACE_VARIANT),
                        ft.Text("·", color=ft.Colors.ON_SURFACE_VARIANT),
                        ft.Icon(
                            ft.Icons.PERSON_OUTLINE, size=16, color=ft.Colors.ON_SURFACE_VARIANT
                        ),
                        ft.Text(who, size=13, color=ft.Colors.ON_SURFACE_VARIANT),
                    ],
                    spacing=6,
                    tight=True,
                )
            )
        items.append(status)
        return ft.Container(
            ft.Row(items, spacing=16, vertical_alignment=ft.CrossAxisAlignment.CENTER),
            padding=ft.Padding.only(left=24 if self.wide else 16, right=16, top=12, bottom=12),
        )

    def _go(self, name: str) -> Callable[[ft.Event[ft.Container]], None]:
        route = "/" if name == "dashboard" else f"/{name}"

        def go(_: ft.Event[ft.Container]) -> None:
            if name != self.nav_name:  # the destination lights up at once
                self.nav_name = name
                self._relabel()
            self.navigate(route)

        return go

    def _destination(self, name: str, *, compact: bool) -> ft.Control:
        selected = name == self.nav_name
        outline, filled = ICONS[name]
        label = self.i18n.t(f"shell.nav.{name}")
        pill = ft.Container(
            ft.Icon(
                filled if selected else outline,
                size=22,
                color=ft.Colors.ON_SECONDARY_CONTAINER
                if selected
                else ft.Colors.ON_SURFACE_VARIANT,
            ),
            width=56 if not compact else 52,
            height=32,
            border_radius=16,
            alignment=ft.Alignment.CENTER,
            bgcolor=ft.Colors.SECONDARY_CONTAINER if selected else None,
        )
        text = ft.Text(
            label,
            size=12 if not compact else 11,
            weight=ft.FontWeight.W_600 if selected else ft.FontWeight.W_500,
            color=ft.Colors.ON_SURFACE if selected else ft.Colors.ON_SURFACE_VARIANT,
            max_lines=1,
            overflow=ft.TextOverflow.ELLIPSIS,
            text_align=ft.TextAlign.CENTER,
        )
        return ft.Semantics(
            identifier=ids.nav(name),
            label=label,
            selected=selected,
            button=True,
            content=ft.Container(
                ft.Column(
                    [pill, text],
                    spacing=4,
                    tight=True,
                    horizontal_alignment=ft.CrossAxisAlignment.CENTER,
                ),
                on_click=self._go(name),
                padding=ft.Padding.symmetric(vertical=6 if compact else 4),
                border_radius=12,
                expand=compact,
            ),
            expand=compact,
        )

    def _rail(self) -> ft.Control:
        logo = ft.Container(
            ft.Icon(ft.Icons.HUB_OUTLINED, color=ft.Colors.ON_PRIMARY_CONTAINER, size=24),
            width=48,
            height=48,
            border_radius=14,
            bgcolor=ft.Colors.PRIMARY_CONTAINER,
            alignment=ft.Alignment.CENTER,
            tooltip=self.i18n.t("shell.title"),
        )
        names = self.destinations()
        main = [self._destination(n, compact=False) for n in names if n != "settings"]
        return ft.Semantics(
            identifier=ids.NAV_RAIL,
            content=ft.Container(
                ft.Column(
                    [
                        logo,
                        ft.Container(height=12),
                        *main,
                        ft.Container(expand=True),
                        self._destination("settings", compact=False),
                    ],
                    spacing=12,
                    horizontal_alignment=ft.CrossAxisAlignment.CENTER,
                ),
                width=88,
                padding=ft.Padding.symmetric(vertical=16),
                bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
            ),
        )

    def _bar(self) -> ft.Control:
        return ft.Semantics(
            identifier=ids.NAV_BAR,
            content=ft.Container(
                ft.Row(
                    [self._destination(n, compact=True) for n in self.destinations()],
                    spacing=0,
                    alignment=ft.MainAxisAlignment.SPACE_AROUND,
                ),
                padding=ft.Padding.only(left=4, right=4, top=6, bottom=8),
                bgcolor=ft.Colors.SURFACE_CONTAINER,
            ),
        )

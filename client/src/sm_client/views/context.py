"""What every screen is given, and what every screen offers the shell."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import flet as ft

from sm_client.api import CoreApi
from sm_client.i18n import Translator
from sm_client.state.feed import Feed


@dataclass
class ScreenContext:
    """The signed-in session as screens see it.

    ``navigate("/nodes/<id>")`` changes the route (the shell builds the screen);
    ``notify(text)`` shows a transient message.
    """

    page: ft.Page
    api: CoreApi
    feed: Feed
    i18n: Translator
    navigate: Callable[[str], None]
    notify: Callable[[str], None]


# A route's parameters: the path's (``node_id``, ``command_id``) and the query's.
RouteParams = dict[str, str]


class Screen(Protocol):
    """One screen. The shell calls ``control()`` once, then ``enter()`` each time it is
    shown and ``leave()`` when another screen replaces it."""

    def control(self) -> ft.Control:
        """The screen's root control (wrapped in ``ft.Semantics(identifier=ids.screen(name))``)."""

    async def enter(self) -> None:
        """Load (show the loading state first), subscribe to live topics, re-render."""

    def leave(self) -> None:
        """Unsubscribe from live topics and stop background tasks."""

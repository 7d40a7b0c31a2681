"""What the commands and audit screens share: a screen skeleton, chips, times, spec text."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import flet as ft

from sm_client.api.commands import CommandSummary, Target
from sm_client.i18n import Translator
from sm_client.state.observable import Observable
from sm_client.views.context import ScreenContext

WIDE: Final = 760  # px of the screen's own width from which rows become table rows

STATE_COLORS: Final[dict[str, str]] = {
    "queued": ft.Colors.ON_SURFACE_VARIANT,
    "sent": ft.Colors.ON_SURFACE_VARIANT,
    "running": ft.Colors.PRIMARY,
    "succeeded": ft.Colors.GREEN,
    "failed": ft.Colors.ERROR,
    "timed_out": ft.Colors.ORANGE,
    "cancelled": ft.Colors.OUTLINE,
    "expired": ft.Colors.OUTLINE,
    "refused": ft.Colors.ORANGE,
    # command statuses
    "done": ft.Colors.GREEN,
}


def when(at: float | None) -> str:
    """Local time of a Unix time, to the second."""
    if at is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes} min {secs} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def chip(text: str, color: str, *, icon: ft.IconData | None = None) -> ft.Control:
    """A small tinted label (a state, a kind)."""
    children: list[ft.Control] = []
    if icon is not None:
        children.append(ft.Icon(icon, size=14, color=color))
    children.append(ft.Text(text, size=12, color=color, weight=ft.FontWeight.W_600, no_wrap=True))
    return ft.Container(
        ft.Row(children, spacing=4, tight=True),
        padding=ft.Padding.symmetric(horizontal=8, vertical=2),
        border_radius=12,
        bgcolor=ft.Colors.with_opacity(0.12, color),
    )


def card(
    content: ft.Control,
    *,
    col: dict[str | ft.ResponsiveRowBreakpoint, int | float] | None = None,
    padding: int = 16,
) -> ft.Card:
    return ft.Card(
        ft.Container(content, padding=padding),
        elevation=0,
        bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
        col=col if col is not None else 12,
        margin=0,
    )


def heading(text: str, icon: ft.IconData | None = None) -> ft.Control:
    parts: list[ft.Control] = []
    if icon is not None:
        parts.append(ft.Icon(icon, size=20, color=ft.Colors.PRIMARY))
    parts.append(ft.Text(text, size=16, weight=ft.FontWeight.W_600))
    return ft.Row(parts, spacing=8)


def spec_text(command: Mapping[str, Any]) -> str:
    """What a command runs, in one line, as an operator would type it."""
    kind = command.get("kind")
    if kind == "shell":
        shell = command.get("shell") or {}
        text = shell.get("script") or " ".join(shell.get("argv") or [])
        first = str(text).strip().splitlines()[0] if str(text).strip() else ""
        more = " …" if len(str(text).strip().splitlines()) > 1 else ""
        return f"$ {first}{more}"
    if kind == "service":
        service = command.get("service") or {}
        return " ".join(
            p for p in ("systemctl", service.get("action", ""), service.get("unit", "")) if p
        )
    if kind == "logs":
        logs = command.get("logs") or {}
        lines = logs.get("lines", 100)
        follow = " -f" if logs.get("follow") else ""
        if logs.get("unit"):
            return f"journalctl -u {logs['unit']} -n {lines}{follow}"
        return f"tail -n {lines}{follow} {logs.get('path', '')}"
    return str(kind or "")


def target_text(i18n: Translator, target: Target | Mapping[str, Any], node_count: int) -> str:
    parts: list[str] = []
    if target.get("all"):
        parts.append(i18n.t("commands.target.all"))
    if target.get("groups"):
        parts.append(i18n.t("commands.target.groups", names=", ".join(target["groups"])))
    if target.get("selector"):
        parts.append(i18n.t("commands.target.selector", selector=target["selector"]))
    if target.get("node_ids"):
        parts.append(i18n.t("commands.target.nodes", n=len(target["node_ids"])))
    return " · ".join(parts) or nodes_text(i18n, node_count)


def nodes_text(i18n: Translator, n: int) -> str:
    return i18n.t("commands.nodes_count", n=n)


def ended_count(command: CommandSummary) -> int:
    s = command["summary"]
    return (
        s["succeeded"] + s["failed"] + s["timed_out"] + s["cancelled"] + s["expired"] + s["refused"]
    )


class ScreenBase(ABC):
    """A screen's root, its width, listening to its view-model and the language."""

    name = "commands"

    def __init__(self, ctx: ScreenContext, model: Observable) -> None:
        self.ctx = ctx
        self.i18n = ctx.i18n
        self.model = model
        page_width = float(ctx.page.width or 1440)
        self.width = page_width - (96 if page_width >= 840 else 0)
        self.body = ft.Column(spacing=12, scroll=ft.ScrollMode.AUTO, expand=True)
        self.root = ft.Semantics(
            identifier=f"screen-{self.name}",
            container=True,
            content=ft.Container(
                self.body,
                expand=True,
                padding=ft.Padding.symmetric(horizontal=16, vertical=12),
                on_size_change=self._on_size,
                size_change_interval=150,
            ),
        )
        self._stops: list[Callable[[], None]] = []
        self._left = False

    @property
    def left(self) -> bool:
        """Whether the shell replaced this screen (background loops end)."""
        return self._left

    @property
    def wide(self) -> bool:
        return self.width >= WIDE

    def control(self) -> ft.Control:
        return self.root

    def listen(self) -> None:
        if not self._stops:
            self._stops = [self.model.listen(self.refresh), self.i18n.listen(self.refresh)]
        self._left = False

    def stop_listening(self) -> None:
        for stop in self._stops:
            stop()
        self._stops = []
        self._left = True

    def _on_size(self, e: ft.LayoutSizeChangeEvent[ft.LayoutControl]) -> None:
        wide = self.wide
        self.width = e.width
        if wide != self.wide:
            self.refresh()

    @abstractmethod
    def render(self) -> None:
        """Rebuild the body from the view-model (called on each change)."""

    def refresh(self) -> None:
        self.render()
        if self.root.page is not None:
            self.root.update()

    def spawn(self, work: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.ctx.page.run_task(work, *args)

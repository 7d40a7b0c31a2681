"""The loading, empty and error panels: one look for every screen."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import flet as ft

from sm_client.i18n import Translator
from sm_client.state.observable import Load, Phase
from sm_client.views import ids


def loading(i18n: Translator) -> ft.Control:
    return ft.Semantics(
        identifier=ids.STATE_LOADING,
        label=i18n.t("states.loading"),
        content=ft.Container(
            ft.Row(
                [
                    ft.ProgressRing(width=20, height=20, stroke_width=2),
                    ft.Text(i18n.t("states.loading")),
                ],
                alignment=ft.MainAxisAlignment.CENTER,
            ),
            padding=32,
        ),
    )


def empty(
    i18n: Translator, message: str | None = None, icon: ft.IconData = ft.Icons.INBOX_OUTLINED
) -> ft.Control:
    text = message or i18n.t("states.empty")
    return ft.Semantics(
        identifier=ids.STATE_EMPTY,
        label=text,
        content=ft.Container(
            ft.Column(
                [
                    ft.Icon(icon, size=40, opacity=0.5),
                    ft.Text(text, text_align=ft.TextAlign.CENTER),
                ],
                horizontal_alignment=ft.CrossAxisAlignment.CENTER,
            ),
            padding=32,
            alignment=ft.Alignment.CENTER,
        ),
    )


def error(
    i18n: Translator,
    title: str,
    detail: str = "",
    retry: Callable[[], Awaitable[None]] | None = None,
) -> ft.Control:
    """The problem's title and detail, and a retry button when ``retry`` is given."""

    async def on_retry(_: ft.Event[ft.OutlinedButton]) -> None:
        if retry is not None:
            await retry()

    children: list[ft.Control] = [
        ft.Row(
            [
                ft.Icon(ft.Icons.ERROR_OUTLINE, color=ft.Colors.ERROR),
                ft.Text(title, weight=ft.FontWeight.BOLD),
            ],
            alignment=ft.MainAxisAlignment.CENTER,
        )
    ]
    if detail:
        children.append(ft.Text(detail, selectable=True, text_align=ft.TextAlign.CENTER))
    if retry is not None:
        children.append(ft.OutlinedButton(i18n.t("states.retry"), on_click=on_retry))
    return ft.Semantics(
        identifier=ids.STATE_ERROR,
        label=f"{title}: {detail}" if detail else title,
        content=ft.Container(
            ft.Column(children, horizontal_alignment=ft.CrossAxisAlignment.CENTER, spacing=8),
            padding=24,
        ),
    )


def for_load(
    i18n: Translator,
    load: Load,
    ready: Callable[[], ft.Control],
    *,
    empty_message: str | None = None,
    retry: Callable[[], Awaitable[None]] | None = None,
) -> ft.Control:
    """The panel ``load`` calls for, or ``ready()`` when the data is there."""
    if load.phase is Phase.LOADING:
        return loading(i18n)
    if load.phase is Phase.EMPTY:
        return empty(i18n, empty_message)
    if load.phase is Phase.ERROR and load.problem is not None:
        return error(i18n, load.problem.title, load.problem.detail, retry)
    return ready()

"""Small styled controls the screens share: muted and monospace text, pills, outlined cards."""

from __future__ import annotations

from typing import Final

import flet as ft

from sm_client.views.fonts import CJK_FONT, MONO_FONT

_MONO_FALLBACK: Final = [CJK_FONT]  # Chinese in output, paths or names


def muted(text: str, *, size: int = 12, mono: bool = False, selectable: bool = False) -> ft.Text:
    """Secondary text (captions, hints, timestamps) in the theme's variant colour."""
    return ft.Text(
        text,
        size=size,
        color=ft.Colors.ON_SURFACE_VARIANT,
        font_family=MONO_FONT if mono else None,
        font_family_fallback=_MONO_FALLBACK if mono else None,
        selectable=selectable,
    )


def mono_text(
    value: str,
    *,
    size: float | None = None,
    selectable: bool = False,
    no_wrap: bool = False,
    max_lines: int | None = None,
    overflow: ft.TextOverflow = ft.TextOverflow.CLIP,
    color: str | None = None,
    weight: ft.FontWeight | None = None,
    expand: bool | int | None = None,
) -> ft.Text:
    """Text as a terminal shows it: scripts, output, logs, ids, fingerprints."""
    return ft.Text(
        value,
        size=size,
        font_family=MONO_FONT,
        font_family_fallback=_MONO_FALLBACK,
        selectable=selectable,
        no_wrap=no_wrap,
        max_lines=max_lines,
        overflow=overflow,
        color=color,
        weight=weight,
        expand=expand,
    )


def mono_style(size: float | None = None) -> ft.TextStyle:
    """The text style of scripts, selectors, units and paths typed into a field."""
    return ft.TextStyle(font_family=MONO_FONT, font_family_fallback=_MONO_FALLBACK, size=size)


def pill(text: str, bg: str, fg: str, *, icon: ft.IconData | None = None) -> ft.Control:
    """A rounded label on a filled background (a status, a role, a label)."""
    children: list[ft.Control] = []
    if icon is not None:
        children.append(ft.Icon(icon, size=14, color=fg))
    children.append(ft.Text(text, size=12, color=fg, weight=ft.FontWeight.W_500, no_wrap=True))
    return ft.Container(
        ft.Row(children, spacing=4, tight=True),
        bgcolor=bg,
        border_radius=ft.BorderRadius.all(8),
        padding=ft.Padding.symmetric(horizontal=8, vertical=2),
    )


def outlined_card(
    content: ft.Control, *, padding: int = 16, expand: bool | int = False
) -> ft.Container:
    """A section of a screen: a low surface with a thin outline."""
    return ft.Container(
        content,
        bgcolor=ft.Colors.SURFACE_CONTAINER_LOW,
        border=ft.Border.all(1, ft.Colors.OUTLINE_VARIANT),
        border_radius=ft.BorderRadius.all(12),
        padding=padding,
        expand=expand,
    )

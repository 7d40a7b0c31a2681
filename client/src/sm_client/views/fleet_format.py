"""How the fleet screens write numbers: percentages, rates, sizes, "3 min ago"."""

from __future__ import annotations

import time
from datetime import datetime

import flet as ft

from sm_client.i18n import Translator

DASH = "—"


def percent(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


def size(value: float | None, suffix: str = "B") -> str:
    """``1.2 GB`` (binary multiples, written the usual way)."""
    if value is None:
        return DASH
    number = float(value)
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(number) < 1024 or unit == "P":
            if unit == "":
                return f"{number:.0f} {suffix}"
            return (
                f"{number:.1f} {unit}{suffix}" if number < 100 else f"{number:.0f} {unit}{suffix}"
            )
        number /= 1024
    return f"{number:.0f} P{suffix}"  # pragma: no cover


def rate(value: float | None) -> str:
    return DASH if value is None else size(value, "B/s")


def ago(i18n: Translator, seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 5:
        return i18n.t("nodes.just_now")
    if seconds < 60:
        return i18n.t("nodes.seconds_ago", n=int(seconds))
    if seconds < 3600:
        return i18n.t("nodes.minutes_ago", n=int(seconds // 60))
    if seconds < 86400:
        return i18n.t("nodes.hours_ago", n=int(seconds // 3600))
    return i18n.t("nodes.days_ago", n=int(seconds // 86400))


def since_iso(i18n: Translator, stamp: str | None) -> str:
    """``3 min ago`` for an ISO 8601 time; "never seen" for None."""
    if not stamp:
        return i18n.t("nodes.never_seen")
    try:
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return stamp
    return ago(i18n, time.time() - at)


def level(value: float | None) -> ft.ColorValue:
    """The colour of a usage figure: calm, then tertiary above 75 %, error above 90 %."""
    if value is None:
        return ft.Colors.OUTLINE_VARIANT
    if value >= 90:
        return ft.Colors.ERROR
    if value >= 75:
        return ft.Colors.TERTIARY
    return ft.Colors.PRIMARY


def status_color(online: bool) -> ft.ColorValue:
    return ft.Colors.GREEN if online else ft.Colors.OUTLINE

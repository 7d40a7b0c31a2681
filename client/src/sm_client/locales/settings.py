"""Strings of the settings area."""

from typing import Final

EN: Final[dict[str, str]] = {}

ZH: Final[dict[str, str]] = {}

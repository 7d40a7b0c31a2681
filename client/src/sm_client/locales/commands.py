"""Strings of the commands area."""

from typing import Final

EN: Final[dict[str, str]] = {}

ZH: Final[dict[str, str]] = {}

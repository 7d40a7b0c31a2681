"""Strings of the node detail area."""

from typing import Final

EN: Final[dict[str, str]] = {}

ZH: Final[dict[str, str]] = {}

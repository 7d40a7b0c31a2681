"""Strings of the audit area."""

from typing import Final

EN: Final[dict[str, str]] = {}

ZH: Final[dict[str, str]] = {}

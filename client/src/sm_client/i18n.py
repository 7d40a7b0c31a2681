"""Every string a screen shows, in English and 简体中文.

Strings live in ``sm_client.locales.<area>`` modules, one per screen area,
each with an ``EN`` and a ``ZH`` dict holding the same keys (a test checks
it). Keys are ``<area>.<what>``; values are ``str.format`` templates. A key
with a count (``n`` or ``count``) may have a ``<key>.one`` twin, used when the
count is 1 ("1 node", not "1 nodes").
"""

from __future__ import annotations

import importlib
from enum import Enum
from typing import Final

from sm_client.state.observable import Observable

AREAS: Final = (
    "shell",
    "connect",
    "settings",
    "dashboard",
    "nodes",
    "node_detail",
    "commands",
    "audit",
    "admin",
    "states",
)


class Language(Enum):
    EN = "en"
    ZH = "zh"


def catalog(language: Language) -> dict[str, str]:
    """Every key of every area in ``language``."""
    merged: dict[str, str] = {}
    for area in AREAS:
        module = importlib.import_module(f"sm_client.locales.{area}")
        merged.update(getattr(module, language.name))
    return merged


class Translator(Observable):
    """The current language; views listen to re-render their texts when it changes."""

    def __init__(self, language: Language = Language.EN) -> None:
        super().__init__()
        self._catalogs = {lang: catalog(lang) for lang in Language}
        self.language = language

    def set_language(self, language: Language) -> None:
        if language is not self.language:
            self.language = language
            self.changed()

    def t(self, key: str, **values: object) -> str:
        """The text of ``key`` in the current language, formatted with ``values``."""
        if (
            values.get("n", values.get("count")) == 1
            and f"{key}.one" in self._catalogs[Language.EN]
        ):
            key = f"{key}.one"
        text = self._catalogs[self.language].get(key) or self._catalogs[Language.EN].get(key, key)
        return text.format(**values) if values else text

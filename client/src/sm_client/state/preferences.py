"""The user's preferences: theme (light, dark, follow the system) and language.

Kept in the client's storage (``ft.SharedPreferences`` in the view layer: the
browser's local storage on the web, the platform's preferences elsewhere)
through the small :class:`Storage` protocol, so tests use a dict.
"""

from __future__ import annotations

from enum import Enum
from typing import Final, Protocol

from sm_client.i18n import Language, Translator
from sm_client.state.observable import Observable

THEME_KEY: Final = "sm.theme"
LANGUAGE_KEY: Final = "sm.language"


class Storage(Protocol):
    """Persistent string values by key (the client's local storage)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...

    async def remove(self, key: str) -> None: ...


class MemoryStorage:
    """A :class:`Storage` in a dict: for tests, and when no client storage answers."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.values.get(key)

    async def set(self, key: str, value: str) -> None:
        self.values[key] = value

    async def remove(self, key: str) -> None:
        self.values.pop(key, None)


class Theme(Enum):
    LIGHT = "light"
    DARK = "dark"
    SYSTEM = "system"


class Preferences(Observable):
    """Theme and language; the language is the translator's (views listen to it)."""

    def __init__(self, storage: Storage, i18n: Translator) -> None:
        super().__init__()
        self.storage = storage
        self.i18n = i18n
        self.theme = Theme.SYSTEM

    @property
    def language(self) -> Language:
        return self.i18n.language

    async def load(self) -> None:
        """Read the stored choices (unknown or missing values keep the defaults)."""
        theme = await self.storage.get(THEME_KEY)
        language = await self.storage.get(LANGUAGE_KEY)
        self.theme = next((t for t in Theme if t.value == theme), Theme.SYSTEM)
        chosen = next((lang for lang in Language if lang.value == language), None)
        if chosen is not None:
            self.i18n.set_language(chosen)
        self.changed()

    async def set_theme(self, theme: Theme) -> None:
        if theme is not self.theme:
            self.theme = theme
            self.changed()
        await self.storage.set(THEME_KEY, theme.value)

    async def set_language(self, language: Language) -> None:
        self.i18n.set_language(language)  # the translator tells the views
        self.changed()
        await self.storage.set(LANGUAGE_KEY, language.value)

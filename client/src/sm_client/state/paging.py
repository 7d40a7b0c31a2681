"""Cursor paging for the lists the core pages with opaque cursors (commands, audit).

:class:`Cursors` remembers the cursor of each page seen so a view can go back
as well as forward; :class:`CursorPaged` is the view-model part every such
list shares (next, previous, clear the filters), around its own ``refresh``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sm_client.api import CoreApi
from sm_client.api.commands import CommandsApi
from sm_client.state.observable import Load, Observable


@dataclass
class Cursors:
    """The cursor of each page seen: ``[None, c1, c2, ...]``; ``index`` is the page shown."""

    pages: list[str | None] = field(default_factory=lambda: [None])
    index: int = 0
    next_cursor: str | None = None

    @property
    def current(self) -> str | None:
        return self.pages[self.index]

    @property
    def has_next(self) -> bool:
        return self.next_cursor is not None

    @property
    def has_previous(self) -> bool:
        return self.index > 0

    def reset(self) -> None:
        self.pages, self.index, self.next_cursor = [None], 0, None

    def forward(self) -> None:
        if self.next_cursor is None:
            return
        del self.pages[self.index + 1 :]
        self.pages.append(self.next_cursor)
        self.index += 1

    def back(self) -> None:
        if self.index > 0:
            self.index -= 1


Filters = TypeVar("Filters")
Item = TypeVar("Item")


class CursorPaged(Observable, Generic[Filters, Item]):
    """A paged, filtered list of ``Item``: ``filters`` is a dataclass whose defaults
    mean "no filter"; ``items`` is the page shown."""

    def __init__(self, api: CoreApi, filters: Filters, *, page_size: int) -> None:
        super().__init__()
        self.api = api
        self.commands = CommandsApi(api)
        self.page_size = page_size
        self.load = Load()
        self.items: list[Item] = []
        self.filters = filters
        self.cursors = Cursors()

    @property
    def page_number(self) -> int:
        """1 for the first page."""
        return self.cursors.index + 1

    @abstractmethod
    async def refresh(self) -> None:
        """Read the page ``cursors.current`` names with ``filters``."""

    async def clear_filters(self) -> None:
        self.filters = type(self.filters)()
        self.cursors.reset()
        await self.refresh()

    async def next_page(self) -> None:
        if self.cursors.has_next:
            self.cursors.forward()
            await self.refresh()

    async def previous_page(self) -> None:
        if self.cursors.has_previous:
            self.cursors.back()
            await self.refresh()

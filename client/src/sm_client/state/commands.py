"""The command history's view-model: filtered, paged, newest first.

The core pages with opaque cursors (``sm_client.state.paging``). Filters (actor,
kind, status, node) apply from the first page again. While commands on the
shown page are still running the view calls :meth:`CommandsState.refresh`
now and then (there is no live topic for the history itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from sm_client.api import ApiError, CoreApi
from sm_client.api.commands import CommandStatus, CommandSummary, Kind
from sm_client.state.paging import CursorPaged

PAGE: Final = 25


@dataclass
class CommandFilters:
    actor: str = ""
    kind: Kind | None = None
    status: CommandStatus | None = None
    node_id: str = ""

    @property
    def active(self) -> bool:
        return bool(self.actor or self.kind or self.status or self.node_id)


class CommandsState(CursorPaged[CommandFilters, CommandSummary]):
    def __init__(self, api: CoreApi, *, page_size: int = PAGE) -> None:
        super().__init__(api, CommandFilters(), page_size=page_size)

    @property
    def may_run(self) -> bool:
        return self.api.may("commands:run")

    @property
    def any_running(self) -> bool:
        return any(c["status"] == "running" for c in self.items)

    async def refresh(self, *, quiet: bool = False) -> None:
        """Read the shown page again (``quiet``: keep showing the rows meanwhile)."""
        if not quiet or not self.items:
            self.load.loading()
            self.changed()
        f = self.filters
        try:
            page = await self.commands.list_commands(
                actor=f.actor or None,
                kind=f.kind,
                status=f.status,
                node_id=f.node_id or None,
                limit=self.page_size,
                cursor=self.cursors.current,
            )
        except ApiError as exc:
            self.load.failed(exc)
        else:
            same = (
                quiet
                and page["items"] == self.items
                and page["next_cursor"] == self.cursors.next_cursor
            )
            self.items = page["items"]
            self.cursors.next_cursor = page["next_cursor"]
            self.load.ready(empty=not self.items)
            if same:
                return  # nothing to redraw (a quiet re-read while commands run)
        self.changed()

    async def set_filters(
        self,
        *,
        actor: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        node_id: str | None = None,
    ) -> None:
        """Change the filters given (an empty string clears one); back to the first page."""
        f = self.filters
        if actor is not None:
            f.actor = actor.strip()
        if kind is not None:
            f.kind = cast(Kind, kind) if kind in ("shell", "service", "logs") else None
        if status is not None:
            f.status = (
                cast(CommandStatus, status) if status in ("running", "done", "cancelled") else None
            )
        if node_id is not None:
            f.node_id = node_id.strip()
        self.cursors.reset()
        await self.refresh()

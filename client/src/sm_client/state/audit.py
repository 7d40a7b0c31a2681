"""The audit log's view-model: a filtered, paged list and the chain's verification.

Filters (actor, action, target, a time window) apply from the first page
again; pages go forward and back with the core's cursors. :meth:`AuditState.verify`
asks the core to check the whole hash chain and keeps the verdict (``ok``,
records checked, the first bad record and why).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Final

from sm_client.api import ApiError, CoreApi
from sm_client.api.commands import AuditRecord, AuditVerdict
from sm_client.state.observable import Problem
from sm_client.state.paging import CursorPaged

PAGE: Final = 50
# Time windows the list offers (seconds back from now; "" = all time).
WINDOWS: Final[dict[str, float | None]] = {
    "": None,
    "1h": 3600.0,
    "24h": 86400.0,
    "7d": 7 * 86400.0,
    "30d": 30 * 86400.0,
}
# Actions the filter suggests (any action may be typed).
ACTIONS: Final = (
    "command.create",
    "command.cancel",
    "execution.cancel",
    "execution.finish",
    "node.enroll",
    "node.reenroll",
    "node.update",
    "node.bulk_update",
    "node.delete",
    "group.create",
    "group.update",
    "group.rename",
    "group.delete",
    "user.create",
    "user.update",
    "user.password",
    "user.delete",
    "role.create",
    "role.update",
    "role.delete",
    "enrollment_token.create",
    "enrollment_token.revoke",
)
_ACTION = re.compile(r"^[a-z_]+(\.[a-z_]+)*$")


@dataclass
class AuditFilters:
    actor: str = ""
    action: str = ""
    target: str = ""
    window: str = ""  # a key of WINDOWS

    @property
    def active(self) -> bool:
        return bool(self.actor or self.action or self.target or self.window)


class AuditState(CursorPaged[AuditFilters, AuditRecord]):
    def __init__(self, api: CoreApi, *, page_size: int = PAGE) -> None:
        super().__init__(api, AuditFilters(), page_size=page_size)
        self.filter_error = ""  # an i18n key when a filter cannot be sent as typed
        # verification
        self.verifying = False
        self.verdict: AuditVerdict | None = None
        self.verify_problem: Problem | None = None
        self.verified_at: float | None = None

    async def refresh(self) -> None:
        self.load.loading()
        self.changed()
        f = self.filters
        if f.action and not _ACTION.match(f.action):
            self.filter_error = "audit.error.action"
            self.items, self.cursors.next_cursor = [], None
            self.load.ready(empty=True)
            self.changed()
            return
        self.filter_error = ""
        span = WINDOWS.get(f.window)
        try:
            page = await self.commands.list_audit(
                actor=f.actor or None,
                action=f.action or None,
                target=f.target or None,
                since=time.time() - span if span else None,
                limit=self.page_size,
                cursor=self.cursors.current,
            )
        except ApiError as exc:
            self.load.failed(exc)
        else:
            self.items = page["items"]
            self.cursors.next_cursor = page["next_cursor"]
            self.load.ready(empty=not self.items)
        self.changed()

    async def set_filters(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        window: str | None = None,
    ) -> None:
        f = self.filters
        if actor is not None:
            f.actor = actor.strip()
        if action is not None:
            f.action = action.strip()
        if target is not None:
            f.target = target.strip()
        if window is not None:
            f.window = window if window in WINDOWS else ""
        self.cursors.reset()
        await self.refresh()

    async def verify(self) -> None:
        """Have the core check the chain; the verdict (or the problem) is kept."""
        self.verifying, self.verify_problem = True, None
        self.changed()
        try:
            self.verdict = await self.commands.verify_audit()
        except ApiError as exc:
            self.verdict, self.verify_problem = None, Problem.of(exc)
        else:
            self.verified_at = time.time()
        finally:
            self.verifying = False
            self.changed()

"""The audit view-model against the real core: filters, pages, verification; and the history's."""

from __future__ import annotations

import asyncio
import time

from sm_client.api import CoreApi
from sm_client.api.commands import CommandsApi
from sm_client.state.audit import AuditState
from sm_client.state.commands import CommandsState
from sm_client.state.observable import Phase

from .online import local_node


async def some_commands(api: CoreApi, count: int) -> list[str]:
    node_id = await local_node(api)
    commands = CommandsApi(api)
    made = []
    for i in range(count):
        created = await commands.create(
            {
                "target": {"node_ids": [node_id]},
                "kind": "shell",
                "shell": {"script": f"echo {i}"},
            }
        )
        made.append(created["id"])
    return made


async def test_the_audit_list_filters_pages_and_verifies(admin: CoreApi) -> None:
    made = await some_commands(admin, 3)
    audit = AuditState(admin, page_size=2)
    deadline = time.monotonic() + 20
    while True:
        await audit.set_filters(action="command.create")
        targets = {r["target"] for r in audit.items}
        if audit.load.phase is Phase.READY and f"command:{made[-1]}" in targets:
            break
        assert time.monotonic() < deadline, "the audit records never appeared"
        await asyncio.sleep(0.3)
    assert audit.page_number == 1
    assert len(audit.items) == 2
    assert all(r["action"] == "command.create" for r in audit.items)
    assert audit.cursors.has_next
    first = [r["seq"] for r in audit.items]
    await audit.next_page()
    assert audit.page_number == 2
    second = [r["seq"] for r in audit.items]
    assert max(second) < min(first)  # newest first
    await audit.previous_page()
    assert [r["seq"] for r in audit.items] == first

    await audit.set_filters(action="", target=f"command:{made[0]}")
    assert [r["target"] for r in audit.items] == [f"command:{made[0]}"]
    await audit.set_filters(target="", actor="nobody-here")
    assert audit.load.phase is Phase.EMPTY
    await audit.set_filters(actor="", action="Not An Action")
    assert audit.filter_error == "audit.error.action"
    assert audit.load.phase is Phase.EMPTY
    await audit.set_filters(action="", window="1h")
    assert audit.load.phase is Phase.READY
    await audit.clear_filters()
    assert not audit.filters.active

    assert audit.verdict is None
    await audit.verify()
    assert not audit.verifying
    assert audit.verdict is not None
    assert audit.verdict["ok"] is True
    assert audit.verdict["records"] >= 3
    assert audit.verify_problem is None


async def test_the_history_filters_and_pages(admin: CoreApi) -> None:
    made = await some_commands(admin, 3)
    history = CommandsState(admin, page_size=2)
    await history.refresh()
    assert history.load.phase is Phase.READY
    assert [c["id"] for c in history.items] == [made[2], made[1]]
    assert history.cursors.has_next
    assert not history.cursors.has_previous
    await history.next_page()
    assert history.items[0]["id"] == made[0]
    await history.previous_page()
    assert history.items[0]["id"] == made[2]
    await history.set_filters(kind="service")
    assert history.load.phase is Phase.EMPTY
    await history.set_filters(kind="shell", actor="nobody-here")
    assert history.load.phase is Phase.EMPTY
    assert history.filters.active
    await history.clear_filters()
    assert history.items
    await history.set_filters(node_id="not-a-uuid")
    assert history.load.phase is Phase.ERROR
    assert history.load.problem is not None
    assert history.load.problem.status == 400

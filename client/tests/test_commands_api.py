"""CommandsApi against the real core: create, list, get, output, cancel, rerun, audit."""

from __future__ import annotations

import asyncio
import time

import pytest

from sm_client.api import ApiError, CoreApi
from sm_client.api.commands import ENDED, Command, CommandsApi, decoded

from .online import local_node


async def until_ended(commands: CommandsApi, command_id: str, within: float = 30) -> Command:
    """The command once every execution has ended (a cancelled command's status says
    so at once; a running execution ends when its agent confirms)."""
    deadline = time.monotonic() + within
    while True:
        command = await commands.get(command_id)
        if command["status"] != "running" and all(
            e["state"] in ENDED for e in command["executions"]
        ):
            return command
        assert time.monotonic() < deadline, f"{command_id} still running: {command['summary']}"
        await asyncio.sleep(0.2)


async def test_a_shell_command_runs_and_its_output_reads_back(admin: CoreApi) -> None:
    commands = CommandsApi(admin)
    node_id = await local_node(admin)
    created = await commands.create(
        {
            "target": {"node_ids": [node_id]},
            "kind": "shell",
            "shell": {"script": "echo hello; echo oops >&2; exit 3", "env": {"SECRET": "x"}},
            "timeout": 30,
            "note": "client test",
        }
    )
    assert created["kind"] == "shell"
    assert created["shell"].get("env") == {"SECRET": "***"}
    assert [e["node_id"] for e in created["executions"]] == [node_id]
    done = await until_ended(commands, created["id"])
    (execution,) = done["executions"]
    assert execution["state"] == "failed"
    assert execution["exit_code"] == 3
    assert await commands.output_bytes(done["id"], execution["id"]) == b"hello\n"
    assert await commands.output_bytes(done["id"], execution["id"], "stderr") == b"oops\n"
    page = await commands.output(done["id"], execution["id"], offset=2, limit=2)
    assert decoded(page) == b"ll"
    assert page["next_offset"] == 4
    assert not page["complete"]

    listed = await commands.list_commands(node_id=node_id, kind="shell", limit=100)
    assert created["id"] in [c["id"] for c in listed["items"]]
    assert "executions" not in listed["items"][0]
    only_mine = await commands.list_commands(actor="nobody-at-all")
    assert only_mine["items"] == []

    again = await commands.rerun(done["id"])
    assert again["rerun_of"] == done["id"]
    failed_again = await commands.rerun(done["id"], failed_only=True)
    assert [e["node_id"] for e in failed_again["executions"]] == [node_id]
    picked = await commands.rerun(done["id"], [node_id])
    assert picked["shell"]["script"] == "echo hello; echo oops >&2; exit 3"
    assert "env" not in picked["shell"]
    for command in (again, failed_again, picked):
        assert (await until_ended(commands, command["id"]))["summary"]["failed"] == 1


async def test_history_pages_with_the_cursor(admin: CoreApi) -> None:
    commands = CommandsApi(admin)
    node_id = await local_node(admin)
    made = [
        (
            await commands.create(
                {"target": {"node_ids": [node_id]}, "kind": "shell", "shell": {"script": "true"}}
            )
        )["id"]
        for _ in range(3)
    ]
    first = await commands.list_commands(limit=2)
    assert len(first["items"]) == 2
    assert first["next_cursor"]
    second = await commands.list_commands(limit=2, cursor=first["next_cursor"])
    seen = [c["id"] for c in first["items"] + second["items"]]
    assert seen[:3] == list(reversed(made))  # newest first
    for command_id in made:
        await until_ended(commands, command_id)


async def test_cancel_a_running_command_and_one_execution(admin: CoreApi) -> None:
    commands = CommandsApi(admin)
    node_id = await local_node(admin)
    body = {"target": {"node_ids": [node_id]}, "kind": "shell", "shell": {"script": "sleep 30"}}
    whole = await commands.create(body)  # type: ignore[arg-type]
    one = await commands.create(body)  # type: ignore[arg-type]
    cancelled = await commands.cancel(whole["id"])
    assert cancelled["cancelled_at"] is not None
    execution = await commands.cancel_execution(one["id"], one["executions"][0]["id"])
    assert execution["id"] == one["executions"][0]["id"]
    for command_id in (whole["id"], one["id"]):
        ended = await until_ended(commands, command_id)
        assert all(e["state"] in ENDED for e in ended["executions"])
        assert ended["summary"]["cancelled"] == 1
    with pytest.raises(ApiError) as again:
        await commands.cancel_execution(one["id"], one["executions"][0]["id"])
    assert again.value.status == 409


async def test_refusals_are_api_errors(admin: CoreApi) -> None:
    commands = CommandsApi(admin)
    with pytest.raises(ApiError) as unknown:
        await commands.get("c_not_a_command")
    assert unknown.value.status == 404
    with pytest.raises(ApiError) as no_nodes:
        await commands.create(
            {"target": {"selector": "nobody=here"}, "kind": "shell", "shell": {"script": "true"}}
        )
    assert no_nodes.value.status == 422
    with pytest.raises(ApiError) as bad:
        await commands.create(
            {"target": {"selector": "env in ("}, "kind": "shell", "shell": {"script": "true"}}
        )
    assert bad.value.status == 400
    assert bad.value.detail


async def test_the_audit_log_lists_and_verifies(admin: CoreApi) -> None:
    commands = CommandsApi(admin)
    node_id = await local_node(admin)
    created = await commands.create(
        {"target": {"node_ids": [node_id]}, "kind": "shell", "shell": {"script": "true"}}
    )
    target = f"command:{created['id']}"
    deadline = time.monotonic() + 20
    while not (page := await commands.list_audit(target=target))["items"]:
        assert time.monotonic() < deadline, "the command's audit record never appeared"
        await asyncio.sleep(0.2)
    record = page["items"][-1]
    assert record["action"] == "command.create"
    assert record["target"] == target
    assert len(record["hash"]) == 64
    creations = await commands.list_audit(action="command.create", limit=1)
    assert len(creations["items"]) == 1
    verdict = await commands.verify_audit()
    assert verdict["ok"] is True
    assert verdict["records"] >= 1
    assert "first_bad" not in verdict
    await until_ended(commands, created["id"])

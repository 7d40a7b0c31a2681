"""Handlers of ``/api/v1/commands`` (tag ``commands``): thin; the work is in ``sm_commands.actions``."""

from __future__ import annotations

import asyncio
from typing import Any

from sm_commands import actions, records
from sm_commands.context import current


def _who(token_info: dict[str, Any]) -> tuple[str, str | None]:
    client = token_info.get("client_id")
    return str(token_info["sub"]), None if client is None else str(client)


async def create_command(body: dict[str, Any], token_info: dict[str, Any]) -> tuple[Any, int]:
    actor, client = _who(token_info)
    return await actions.create(current(), actor, client, body), 202


async def list_commands(
    actor: str | None = None,
    kind: str | None = None,
    node_id: str | None = None,
    status: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Any:
    ctx = current()
    filters = records.Filters(actor, kind, node_id, status, since, until)
    return await asyncio.to_thread(records.listing, ctx.engine, filters, limit, cursor)


async def get_command(command_id: str) -> Any:
    return await asyncio.to_thread(records.get, current().engine, command_id)


async def cancel_command(command_id: str, token_info: dict[str, Any]) -> tuple[Any, int]:
    ctx = current()
    actor, client = _who(token_info)
    await actions.cancel(ctx, actor, client, command_id)
    return await asyncio.to_thread(records.get, ctx.engine, command_id), 202


async def cancel_execution(
    command_id: str, execution_id: str, token_info: dict[str, Any]
) -> tuple[Any, int]:
    ctx = current()
    actor, client = _who(token_info)
    await actions.cancel(ctx, actor, client, command_id, execution_id)
    return await asyncio.to_thread(records.execution, ctx.engine, command_id, execution_id), 202


async def rerun_command(
    command_id: str, body: dict[str, Any], token_info: dict[str, Any]
) -> tuple[Any, int]:
    actor, client = _who(token_info)
    which = body.get("nodes", "all")
    return await actions.rerun(current(), actor, client, command_id, which), 202


async def get_output(
    command_id: str,
    execution_id: str,
    stream: str = "stdout",
    offset: int = 0,
    limit: int = 65536,
) -> Any:
    return await asyncio.to_thread(
        records.output, current().engine, command_id, execution_id, stream, offset, limit
    )

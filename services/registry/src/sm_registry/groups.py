"""Groups of nodes: create, list (with node counts), rename, delete (refused while in use).

A node belongs to at most one group. Groups are named on the wire; rows are
referenced by integer id, so a rename touches one row.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection

from sm_registry.inventory import ENROLLMENT_TOKENS, GROUPS, NODES, rfc3339
from sm_shared.audit import AuditEvent, emit
from sm_shared.database import writer
from sm_shared.problems import Conflict, NotFound

if TYPE_CHECKING:
    from sm_registry.context import RegistryContext

SERVICE = "registry"


class GroupNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"group {name!r} does not exist", type_="/problems/group-not-found", group=name
        )


class GroupExists(Conflict):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"group {name!r} already exists", type_="/problems/group-exists", group=name
        )


class GroupInUse(Conflict):
    def __init__(self, name: str, *, node_count: int, token_ids: list[str]) -> None:
        reasons = []
        if node_count:
            reasons.append(f"it has {node_count} node(s); move or delete them first")
        if token_ids:
            reasons.append(
                f"it is the default group of {len(token_ids)} active enrollment token(s); "
                "revoke them first"
            )
        super().__init__(
            f"group {name!r} cannot be deleted: " + "; ".join(reasons),
            type_="/problems/group-in-use",
            group=name,
            node_count=node_count,
            enrollment_token_ids=token_ids,
        )


def group_id(conn: Connection, name: str) -> int:
    """The id of group ``name`` (raises ``GroupNotFound``)."""
    found = conn.execute(sa.select(GROUPS.c.id).where(GROUPS.c.name == name)).scalar()
    if found is None:
        raise GroupNotFound(name)
    return int(found)


def group_ids(conn: Connection, names: list[str]) -> dict[str, int]:
    """Ids of the groups ``names`` (raises ``GroupNotFound`` naming the first unknown one)."""
    rows = conn.execute(sa.select(GROUPS.c.name, GROUPS.c.id).where(GROUPS.c.name.in_(names))).all()
    found = {str(name): int(id_) for name, id_ in rows}
    for name in names:
        if name not in found:
            raise GroupNotFound(name)
    return found


def _wire(row: sa.Row[Any], node_count: int) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "node_count": node_count,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


def _counted() -> sa.Select[Any]:
    count = (
        sa.select(sa.func.count())
        .where(NODES.c.group_id == GROUPS.c.id)
        .scalar_subquery()
        .label("node_count")
    )
    return sa.select(GROUPS, count)


def _read(conn: Connection, name: str) -> dict[str, Any]:
    row = conn.execute(_counted().where(GROUPS.c.name == name)).first()
    if row is None:
        raise GroupNotFound(name)
    return _wire(row, int(row.node_count))


def _list(ctx: RegistryContext) -> list[dict[str, Any]]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(_counted().order_by(GROUPS.c.name)).all()
    return [_wire(row, int(row.node_count)) for row in rows]


async def list_groups(ctx: RegistryContext) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_list, ctx)


def _get(ctx: RegistryContext, name: str) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        return _read(conn, name)


async def get_group(ctx: RegistryContext, name: str) -> dict[str, Any]:
    return await asyncio.to_thread(_get, ctx, name)


def _create(ctx: RegistryContext, name: str, description: str) -> dict[str, Any]:
    now = time.time()
    with writer(ctx.engine).begin() as conn:
        if conn.execute(sa.select(GROUPS.c.id).where(GROUPS.c.name == name)).first():
            raise GroupExists(name)
        conn.execute(
            sa.insert(GROUPS).values(
                name=name, description=description, created_at=now, updated_at=now
            )
        )
        return _read(conn, name)


async def create_group(
    ctx: RegistryContext, *, name: str, description: str, actor: str
) -> dict[str, Any]:
    group = await asyncio.to_thread(_create, ctx, name, description)
    await emit(
        ctx.redis,
        AuditEvent(actor, "group.create", f"group:{name}", SERVICE, {"description": description}),
    )
    return group


def _update(ctx: RegistryContext, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    with writer(ctx.engine).begin() as conn:
        gid = group_id(conn, name)
        new_name = changes.get("name", name)
        if (
            new_name != name
            and conn.execute(sa.select(GROUPS.c.id).where(GROUPS.c.name == new_name)).first()
        ):
            raise GroupExists(new_name)
        conn.execute(
            sa.update(GROUPS).where(GROUPS.c.id == gid).values(**changes, updated_at=time.time())
        )
        return _read(conn, new_name)


async def update_group(
    ctx: RegistryContext, name: str, *, changes: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Rename a group and/or change its description (``changes``: ``name``, ``description``)."""
    group = await asyncio.to_thread(_update, ctx, name, changes)
    action = "group.rename" if group["name"] != name else "group.update"
    await emit(ctx.redis, AuditEvent(actor, action, f"group:{name}", SERVICE, dict(changes)))
    return group


def _delete(ctx: RegistryContext, name: str) -> None:
    now = time.time()
    with writer(ctx.engine).begin() as conn:
        gid = group_id(conn, name)
        node_count = conn.execute(
            sa.select(sa.func.count()).select_from(NODES).where(NODES.c.group_id == gid)
        ).scalar_one()
        active_tokens = ENROLLMENT_TOKENS.c.group_id == gid
        live = sa.and_(
            active_tokens,
            ENROLLMENT_TOKENS.c.revoked_at.is_(None),
            ENROLLMENT_TOKENS.c.expires_at > now,
            sa.or_(
                ENROLLMENT_TOKENS.c.max_uses.is_(None),
                ENROLLMENT_TOKENS.c.uses < ENROLLMENT_TOKENS.c.max_uses,
            ),
        )
        token_ids = list(
            conn.execute(
                sa.select(ENROLLMENT_TOKENS.c.id).where(live).order_by(ENROLLMENT_TOKENS.c.id)
            ).scalars()
        )
        if node_count or token_ids:
            raise GroupInUse(name, node_count=int(node_count), token_ids=token_ids)
        # Spent tokens keep their history but no longer name the group.
        conn.execute(sa.update(ENROLLMENT_TOKENS).where(active_tokens).values(group_id=None))
        conn.execute(sa.delete(GROUPS).where(GROUPS.c.id == gid))


async def delete_group(ctx: RegistryContext, name: str, *, actor: str) -> None:
    await asyncio.to_thread(_delete, ctx, name)
    await emit(ctx.redis, AuditEvent(actor, "group.delete", f"group:{name}", SERVICE))

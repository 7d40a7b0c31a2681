"""Roles: named sets of scopes, assignable to users and service clients.

The built-in roles (``sm_shared.scopes.BUILTIN_ROLES``: viewer, operator,
admin) are read-only and their scopes always come from the code; they also
have rows here, so users and service clients reference every role through a
foreign key (a role still held cannot be deleted, even by a racing request).
Custom roles are defined by admins; their scopes are validated against
``ALL_SCOPES`` (``service`` is never assignable).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Connection, Engine, event, func, insert, select
from sqlalchemy import Table as SaTable
from sqlmodel import Field, Session

from sm_registry.context import RegistryContext
from sm_registry.db import Table
from sm_shared.audit import AuditEvent, emit, given
from sm_shared.database import writer
from sm_shared.problems import BadRequest, Conflict, NotFound
from sm_shared.scopes import ALL_SCOPES, BUILTIN_ROLES


class RoleRow(Table, table=True):
    __tablename__ = "roles"

    name: str = Field(primary_key=True)
    scopes: str = ""  # space-separated; empty for built-in roles (their scopes live in code)
    description: str = ""
    builtin: bool = False
    created_at: float
    updated_at: float


BUILTIN_DESCRIPTIONS = {
    "viewer": "Sees nodes, metrics and commands",
    "operator": "Manages nodes and runs commands",
    "admin": "Everything, including users, roles, enrollment and keys",
}


def _seed_builtin_roles(target: SaTable, connection: Connection, **_: Any) -> None:
    now = time.time()
    connection.execute(
        insert(target),
        [
            {
                "name": name,
                "scopes": "",
                "description": BUILTIN_DESCRIPTIONS.get(name, ""),
                "builtin": True,
                "created_at": now,
                "updated_at": now,
            }
            for name in BUILTIN_ROLES
        ],
    )


ROLES_TABLE = cast(SaTable, RoleRow.__table__)  # type: ignore[attr-defined]
event.listen(ROLES_TABLE, "after_create", _seed_builtin_roles)


def validate_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes in canonical order; ``BadRequest`` naming any that is not assignable."""
    wanted = list(scopes)
    unknown = sorted(set(wanted) - set(ALL_SCOPES))
    if unknown:
        raise BadRequest(
            f"not assignable scopes: {', '.join(unknown)}",
            invalid_scopes=unknown,
            allowed_scopes=list(ALL_SCOPES),
        )
    if not wanted:
        raise BadRequest("a role needs at least one scope")
    return tuple(s for s in ALL_SCOPES if s in wanted)


def _scopes_of_row(row: RoleRow) -> tuple[str, ...]:
    if row.builtin:
        return BUILTIN_ROLES[row.name]
    return tuple(s for s in ALL_SCOPES if s in row.scopes.split())


def role_scopes(session: Session, name: str) -> frozenset[str] | None:
    """The scopes role ``name`` grants now, or None when there is no such role."""
    if name in BUILTIN_ROLES:
        return frozenset(BUILTIN_ROLES[name])
    row = session.get(RoleRow, name)
    return None if row is None else frozenset(_scopes_of_row(row))


def require_role(session: Session, name: str) -> None:
    """``BadRequest`` unless role ``name`` exists (for assigning it)."""
    if session.get(RoleRow, name) is None:
        raise BadRequest(f"there is no role named '{name}'", role=name)


def _wire(row: RoleRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "scopes": list(_scopes_of_row(row)),
        "builtin": row.builtin,
        "description": row.description,
    }


def _order(row: RoleRow) -> tuple[int, str]:
    builtin = list(BUILTIN_ROLES)
    return (builtin.index(row.name), "") if row.builtin else (len(builtin), row.name)


def _get(session: Session, name: str) -> RoleRow:
    row = session.get(RoleRow, name)
    if row is None:
        raise NotFound(f"there is no role named '{name}'", role=name)
    return row


def _holders(session: Session, name: str) -> dict[str, int]:
    """How many rows of each table that references roles hold role ``name``."""
    counts: dict[str, int] = {}
    for table in Table.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table is ROLES_TABLE:
                count = session.scalar(
                    select(func.count()).select_from(table).where(fk.parent == name)
                )
                if count:
                    counts[str(table.name)] = int(count)
    return counts


def _list(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.scalars(select(RoleRow)).all()
        return [_wire(row) for row in sorted(rows, key=_order)]


def _read(engine: Engine, name: str) -> dict[str, Any]:
    with Session(engine) as session:
        return _wire(_get(session, name))


def _create(engine: Engine, name: str, scopes: tuple[str, ...], description: str) -> dict[str, Any]:
    with Session(writer(engine)) as session:
        if name in BUILTIN_ROLES or session.get(RoleRow, name) is not None:
            raise Conflict(f"a role named '{name}' exists already", role=name)
        now = time.time()
        row = RoleRow(
            name=name,
            scopes=" ".join(scopes),
            description=description,
            builtin=False,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.commit()
        return _wire(row)


def _refuse_builtin(row: RoleRow, verb: str) -> None:
    if row.builtin:
        raise Conflict(f"the built-in role '{row.name}' cannot be {verb}", role=row.name)


def _update(
    engine: Engine, name: str, scopes: tuple[str, ...] | None, description: str | None
) -> dict[str, Any]:
    with Session(writer(engine)) as session:
        row = _get(session, name)
        _refuse_builtin(row, "changed")
        if scopes is not None:
            row.scopes = " ".join(scopes)
        if description is not None:
            row.description = description
        row.updated_at = time.time()
        session.add(row)
        session.commit()
        return _wire(row)


def _delete(engine: Engine, name: str) -> None:
    with Session(writer(engine)) as session:
        row = _get(session, name)
        _refuse_builtin(row, "deleted")
        holders = _holders(session, name)
        if holders:
            held = ", ".join(f"{count} in {table}" for table, count in sorted(holders.items()))
            raise Conflict(
                f"the role '{name}' is still assigned ({held}); reassign them first",
                role=name,
                assigned=holders,
            )
        session.delete(row)
        session.commit()


async def list_roles(ctx: RegistryContext) -> list[dict[str, Any]]:
    """Built-in roles first (viewer, operator, admin), then custom roles by name."""
    return await asyncio.to_thread(_list, ctx.engine)


async def get_role(ctx: RegistryContext, name: str) -> dict[str, Any]:
    return await asyncio.to_thread(_read, ctx.engine, name)


async def create_role(
    ctx: RegistryContext, actor: str, name: str, scopes: list[str], description: str = ""
) -> dict[str, Any]:
    """A new custom role (``Conflict`` if the name is taken, ``BadRequest`` for bad scopes)."""
    canonical = validate_scopes(scopes)
    role = await asyncio.to_thread(_create, ctx.engine, name, canonical, description)
    await emit(
        ctx.redis,
        AuditEvent(actor, "role.create", f"role:{name}", "registry", {"scopes": list(canonical)}),
    )
    return role


async def update_role(
    ctx: RegistryContext,
    actor: str,
    name: str,
    scopes: list[str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Change a custom role; built-in roles are read-only (``Conflict``)."""
    canonical = None if scopes is None else validate_scopes(scopes)
    role = await asyncio.to_thread(_update, ctx.engine, name, canonical, description)
    detail = given(scopes=None if canonical is None else list(canonical), description=description)
    await emit(ctx.redis, AuditEvent(actor, "role.update", f"role:{name}", "registry", detail))
    return role


async def delete_role(ctx: RegistryContext, actor: str, name: str) -> None:
    """Delete a custom role; ``Conflict`` while a user or service client holds it."""
    await asyncio.to_thread(_delete, ctx.engine, name)
    await emit(ctx.redis, AuditEvent(actor, "role.delete", f"role:{name}", "registry"))

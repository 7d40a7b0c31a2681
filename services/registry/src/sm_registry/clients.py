"""Service clients an admin creates: an id, a role, and a secret shown once.

They get tokens with the client-credentials grant (``oauth``) carrying the
scopes of their role. Secrets are 32 random bytes, so a SHA-256 of them is
kept (a slow hash protects guessable passwords, not random keys), compared in
constant time. The built-in clients (``sm-admin``, ``sm-services``,
``sm-client``) are not rows here: ``oauth`` knows them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from sm_registry.accounts import ServiceClientRow, check_name_free
from sm_registry.context import RegistryContext
from sm_registry.inventory import rfc3339
from sm_registry.roles import require_role, role_scopes
from sm_shared.audit import AuditEvent, emit, given
from sm_shared.database import writer
from sm_shared.problems import NotFound


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(row: ServiceClientRow, secret: str) -> bool:
    """Constant-time check of a presented secret against the stored hash."""
    return hmac.compare_digest(secret_hash(secret), row.secret_hash)


def _wire(row: ServiceClientRow) -> dict[str, Any]:
    return {
        "client_id": row.client_id,
        "role": row.role,
        "description": row.description,
        "created_at": rfc3339(row.created_at),
    }


def _get(session: Session, client_id: str) -> ServiceClientRow:
    row = session.get(ServiceClientRow, client_id)
    if row is None:
        raise NotFound(f"there is no service client '{client_id}'", client_id=client_id)
    return row


def find_client(engine: Engine, client_id: str) -> tuple[ServiceClientRow, frozenset[str]] | None:
    """The client and the scopes its role grants now, or None (blocking)."""
    with Session(engine) as session:
        row = session.get(ServiceClientRow, client_id)
        if row is None:
            return None
        return row, role_scopes(session, row.role) or frozenset()


def _list(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.exec(select(ServiceClientRow).order_by(ServiceClientRow.client_id)).all()
        return [_wire(row) for row in rows]


def _read(engine: Engine, client_id: str) -> dict[str, Any]:
    with Session(engine) as session:
        return _wire(_get(session, client_id))


def _create(engine: Engine, client_id: str, role: str, description: str) -> dict[str, Any]:
    secret = secrets.token_urlsafe(32)
    with Session(writer(engine)) as session:
        check_name_free(session, client_id)
        require_role(session, role)
        now = time.time()
        row = ServiceClientRow(
            client_id=client_id,
            secret_hash=secret_hash(secret),
            role=role,
            description=description,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.commit()
        return {**_wire(row), "client_secret": secret}


def _update(
    engine: Engine, client_id: str, role: str | None, description: str | None
) -> dict[str, Any]:
    with Session(writer(engine)) as session:
        row = _get(session, client_id)
        if role is not None:
            require_role(session, role)
            row.role = role
        if description is not None:
            row.description = description
        row.updated_at = time.time()
        session.add(row)
        session.commit()
        return _wire(row)


def _delete(engine: Engine, client_id: str) -> None:
    with Session(writer(engine)) as session:
        session.delete(_get(session, client_id))
        session.commit()


async def list_clients(ctx: RegistryContext) -> list[dict[str, Any]]:
    """Every admin-created service client, by id."""
    return await asyncio.to_thread(_list, ctx.engine)


async def get_client(ctx: RegistryContext, client_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(_read, ctx.engine, client_id)


async def create_client(
    ctx: RegistryContext, actor: str, client_id: str, role: str, description: str = ""
) -> dict[str, Any]:
    """A new service client; the result carries its secret (the only time it is shown)."""
    client = await asyncio.to_thread(_create, ctx.engine, client_id, role, description)
    await emit(
        ctx.redis,
        AuditEvent(actor, "client.create", f"client:{client_id}", "registry", {"role": role}),
    )
    return client


async def update_client(
    ctx: RegistryContext,
    actor: str,
    client_id: str,
    role: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    client = await asyncio.to_thread(_update, ctx.engine, client_id, role, description)
    detail = given(role=role, description=description)
    await emit(
        ctx.redis, AuditEvent(actor, "client.update", f"client:{client_id}", "registry", detail)
    )
    return client


async def delete_client(ctx: RegistryContext, actor: str, client_id: str) -> None:
    """Delete a service client: it gets no new token (issued ones expire on their own)."""
    await asyncio.to_thread(_delete, ctx.engine, client_id)
    await emit(ctx.redis, AuditEvent(actor, "client.delete", f"client:{client_id}", "registry"))

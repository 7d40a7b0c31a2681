"""Users: a name, an argon2 password hash, a role, and whether they may sign in.

Users get tokens through the password grant (``oauth``); a token's subject is
the user name (names: see ``accounts``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from sm_registry.accounts import UserRow, check_name_free
from sm_registry.context import RegistryContext
from sm_registry.inventory import rfc3339
from sm_registry.passwords import hash_password, needs_rehash, verify_nothing, verify_password
from sm_registry.ratelimit import Backoff, user_subject
from sm_registry.roles import require_role, role_scopes
from sm_shared.audit import AuditEvent, emit, given
from sm_shared.database import writer
from sm_shared.problems import Forbidden, NotFound


@dataclass(frozen=True)
class SignedInUser:
    """A user whose password was right: what their token may carry."""

    username: str
    role: str
    scopes: frozenset[str]


class WrongCredentials(Exception):
    """Unknown user name or wrong password (deliberately not told apart)."""


class UserDisabled(Exception):
    """The password is right but the account is disabled."""


def _wire(row: UserRow) -> dict[str, Any]:
    return {
        "username": row.username,
        "role": row.role,
        "disabled": row.disabled,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


def _get(session: Session, username: str) -> UserRow:
    row = session.get(UserRow, username)
    if row is None:
        raise NotFound(f"there is no user named '{username}'", username=username)
    return row


def _list(engine: Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.exec(select(UserRow).order_by(UserRow.username)).all()
        return [_wire(row) for row in rows]


def _read(engine: Engine, username: str) -> dict[str, Any]:
    with Session(engine) as session:
        return _wire(_get(session, username))


def _create(engine: Engine, username: str, password_hash: str, role: str) -> dict[str, Any]:
    with Session(writer(engine)) as session:
        check_name_free(session, username)
        require_role(session, role)
        now = time.time()
        row = UserRow(
            username=username,
            password_hash=password_hash,
            role=role,
            disabled=False,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.commit()
        return _wire(row)


def _update(
    engine: Engine,
    username: str,
    role: str | None,
    disabled: bool | None,
    password_hash: str | None,
) -> dict[str, Any]:
    with Session(writer(engine)) as session:
        row = _get(session, username)
        if role is not None:
            require_role(session, role)
            row.role = role
        if disabled is not None:
            row.disabled = disabled
        if password_hash is not None:
            row.password_hash = password_hash
        row.updated_at = time.time()
        session.add(row)
        session.commit()
        return _wire(row)


def _delete(engine: Engine, username: str) -> None:
    with Session(writer(engine)) as session:
        session.delete(_get(session, username))
        session.commit()


def _set_hash(engine: Engine, username: str, password_hash: str) -> None:
    with Session(writer(engine)) as session:
        row = _get(session, username)
        row.password_hash = password_hash
        row.updated_at = time.time()
        session.add(row)
        session.commit()


def authenticate(engine: Engine, username: str, password: str) -> SignedInUser:
    """Check a user's password (blocking: argon2 takes ~0.1-0.2 s).

    Raises ``WrongCredentials`` for an unknown name or a wrong password (same
    cost either way) and ``UserDisabled`` for a disabled account.
    """
    with Session(engine) as session:
        row = session.get(UserRow, username)
        if row is None:
            verify_nothing(password)
            raise WrongCredentials
        if not verify_password(row.password_hash, password):
            raise WrongCredentials
        if row.disabled:
            raise UserDisabled
        scopes = role_scopes(session, row.role)
        stale_hash = needs_rehash(row.password_hash)
    if stale_hash:
        _set_hash(engine, username, hash_password(password))
    return SignedInUser(username=username, role=row.role, scopes=scopes or frozenset())


async def list_users(ctx: RegistryContext) -> list[dict[str, Any]]:
    """Every user, by name."""
    return await asyncio.to_thread(_list, ctx.engine)


async def get_user(ctx: RegistryContext, username: str) -> dict[str, Any]:
    return await asyncio.to_thread(_read, ctx.engine, username)


async def create_user(
    ctx: RegistryContext, actor: str, username: str, password: str, role: str
) -> dict[str, Any]:
    """A new, enabled user (``Conflict`` if the name is taken, ``BadRequest`` for a bad role)."""
    password_hash = await asyncio.to_thread(hash_password, password)
    user = await asyncio.to_thread(_create, ctx.engine, username, password_hash, role)
    await emit(
        ctx.redis,
        AuditEvent(actor, "user.create", f"user:{username}", "registry", {"role": role}),
    )
    return user


async def update_user(
    ctx: RegistryContext,
    actor: str,
    username: str,
    role: str | None = None,
    disabled: bool | None = None,
    password: str | None = None,
) -> dict[str, Any]:
    """Change a user's role, disable or enable them, and/or set a new password."""
    password_hash = None if password is None else await asyncio.to_thread(hash_password, password)
    user = await asyncio.to_thread(_update, ctx.engine, username, role, disabled, password_hash)
    detail = given(role=role, disabled=disabled)
    if password is not None:
        detail["password_changed"] = True
    await emit(ctx.redis, AuditEvent(actor, "user.update", f"user:{username}", "registry", detail))
    return user


async def delete_user(ctx: RegistryContext, actor: str, username: str) -> None:
    await asyncio.to_thread(_delete, ctx.engine, username)
    await emit(ctx.redis, AuditEvent(actor, "user.delete", f"user:{username}", "registry"))


async def change_own_password(
    ctx: RegistryContext, username: str, current_password: str, new_password: str
) -> None:
    """Replace a signed-in user's password after checking the current one.

    Wrong current passwords back off like failed sign-ins (429 while waiting).
    """
    backoff = Backoff(ctx.redis, "password")
    subjects = [user_subject(username)]
    await backoff.check(subjects)
    try:
        await asyncio.to_thread(authenticate, ctx.engine, username, current_password)
    except WrongCredentials:
        await backoff.fail(subjects)
        if await asyncio.to_thread(_exists, ctx.engine, username):
            raise Forbidden("the current password is wrong") from None
        raise NotFound(f"there is no user named '{username}'", username=username) from None
    except UserDisabled:
        raise Forbidden("the account is disabled") from None
    await backoff.succeed(subjects)
    password_hash = await asyncio.to_thread(hash_password, new_password)
    await asyncio.to_thread(_set_hash, ctx.engine, username, password_hash)
    await emit(ctx.redis, AuditEvent(username, "user.password", f"user:{username}", "registry"))


def _exists(engine: Engine, username: str) -> bool:
    with Session(engine) as session:
        return session.get(UserRow, username) is not None

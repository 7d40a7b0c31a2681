"""Who may get tokens: the tables of users and service clients, and their shared names.

User names and service-client ids are one namespace: both become token
subjects (``sub``) and audit actors, so one name never means two principals.
Names starting with ``sm-`` belong to the built-in clients (``sm-admin``,
``sm-services``, ``sm-client``); ``me`` is the signed-in user in paths.
Both tables reference ``roles`` by foreign key: a role still held cannot be
deleted.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, String
from sqlmodel import Field, Session

from sm_registry.db import Table
from sm_shared.problems import BadRequest, Conflict

RESERVED_PREFIX = "sm-"
RESERVED_NAMES = frozenset({"me"})


def _role_reference() -> Column[str]:
    return Column(String, ForeignKey("roles.name", ondelete="RESTRICT"), nullable=False)


class UserRow(Table, table=True):
    __tablename__ = "users"

    username: str = Field(primary_key=True)
    password_hash: str
    role: str = Field(sa_column=_role_reference())
    disabled: bool = False
    created_at: float
    updated_at: float


class ServiceClientRow(Table, table=True):
    __tablename__ = "service_clients"

    client_id: str = Field(primary_key=True)
    secret_hash: str  # hex SHA-256 of the secret (32 random bytes: no slow hash needed)
    role: str = Field(sa_column=_role_reference())
    description: str = ""
    created_at: float
    updated_at: float


def check_name_free(session: Session, name: str) -> None:
    """``BadRequest`` for a reserved name, ``Conflict`` when a user or client holds it."""
    if name.startswith(RESERVED_PREFIX) or name in RESERVED_NAMES:
        raise BadRequest(
            f"'{name}' is reserved (names starting with '{RESERVED_PREFIX}', and 'me')",
            name=name,
        )
    if session.get(UserRow, name) is not None:
        raise Conflict(f"a user named '{name}' exists already", name=name)
    if session.get(ServiceClientRow, name) is not None:
        raise Conflict(f"a service client named '{name}' exists already", name=name)

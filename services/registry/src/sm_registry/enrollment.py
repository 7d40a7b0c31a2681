"""Enrollment: node credentials, enrollment tokens, ``POST /api/v1/enroll``, agent authentication.

Texts (each part unpadded base64url where not an id)::

    smn1.<node_id>.<secret>         node credential (one per node)
    smt1.<fingerprint>.<secret>     enrollment token (admin-created, scoped)
    sme1.<fingerprint>.<secret>     the enrollment key (sm_shared.access_keys)

``fingerprint`` is the SHA-256 of the core CA certificate (DER), as in the
keys, so a token bootstraps trust exactly like the enrollment key. Secrets are
32 random bytes; only their SHA-256 is stored. A token is found by the hash of
its secret; a credential by its node id, then its hash compared in constant time.

Enrolling:

- with the enrollment key or a usable token (and no credential): a new node;
  a token's default group and labels apply and one of its uses is spent. If
  another node already has the same machine id, the new node is flagged
  ``duplicate_of`` that node, for an admin to settle (``nodes.decide_duplicate``);
- with the node's current credential: the same node, its facts refreshed and
  its credential rotated (the old one stops working). A key, if also given,
  must be valid, but no token use is spent.

Failed attempts count towards the client address's backoff (429 while it
must wait), checked before anything is verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import orjson
import sqlalchemy as sa
from sqlalchemy import Connection

from sm_registry.groups import group_id
from sm_registry.inventory import (
    ENROLLMENT_TOKENS,
    GROUPS,
    NODE_CREDENTIALS,
    NODES,
    rfc3339,
)
from sm_registry.labels import validate_labels
from sm_registry.nodes import write_labels
from sm_registry.ratelimit import Backoff
from sm_shared.access_keys import KeyKind, b64url, load_key
from sm_shared.audit import AuditEvent, emit
from sm_shared.command_keys import command_public_key
from sm_shared.database import writer
from sm_shared.pki import ca_fingerprint
from sm_shared.problems import BadRequest, Forbidden, NotFound, Unauthorized

if TYPE_CHECKING:
    from sm_registry.context import RegistryContext

SERVICE: Final = "registry"
CREDENTIAL_PREFIX: Final = "smn1"
TOKEN_PREFIX: Final = "smt1"  # noqa: S105 (a prefix, not a secret)
BACKOFF_BUCKET: Final = "enroll"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return b64url(secrets.token_bytes(32))


# ---- problems ----


class EnrollmentRefused(Unauthorized):
    """The key, token or credential presented does not allow enrolling (401)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, type_="/problems/enrollment-refused")


class CredentialRevoked(Forbidden):
    def __init__(self, node_id: str) -> None:
        super().__init__(
            f"the credential of node {node_id!r} was revoked (the node was deleted or replaced)",
            type_="/problems/credential-revoked",
            node_id=node_id,
        )


class InvalidCredential(Unauthorized):
    def __init__(self, detail: str = "unknown or invalid node credential") -> None:
        super().__init__(detail, type_="/problems/invalid-credential")


class TokenNotFound(NotFound):
    def __init__(self, token_id: str) -> None:
        super().__init__(
            f"enrollment token {token_id!r} does not exist",
            type_="/problems/enrollment-token-not-found",
            token_id=token_id,
        )


# ---- credentials ----


def _parse_credential(text: str) -> tuple[str, str]:
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != CREDENTIAL_PREFIX or not parts[1] or not parts[2]:
        raise InvalidCredential("not a node credential (expected 'smn1.<node id>.<secret>')")
    return parts[1], parts[2]


def _verify_credential(conn: Connection, text: str) -> str:
    """The node id ``text`` is the live credential of (raises 401 or 403)."""
    node_id, secret = _parse_credential(text)
    row = conn.execute(
        sa.select(NODE_CREDENTIALS.c.secret_sha256, NODE_CREDENTIALS.c.revoked_at).where(
            NODE_CREDENTIALS.c.node_id == node_id
        )
    ).first()
    if row is None or not hmac.compare_digest(row.secret_sha256, secret_hash(secret)):
        raise InvalidCredential()
    if row.revoked_at is not None:
        raise CredentialRevoked(node_id)
    return node_id


def _authenticate(ctx: RegistryContext, credential: str) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        node_id = _verify_credential(conn, credential)
        row = conn.execute(
            sa.select(NODES.c.id, NODES.c.name, NODES.c.labels, GROUPS.c.name.label("group"))
            .select_from(NODES.outerjoin(GROUPS, NODES.c.group_id == GROUPS.c.id))
            .where(NODES.c.id == node_id)
        ).first()
    if row is None:  # a live credential without its node: treat as deleted
        raise CredentialRevoked(node_id)
    return {
        "node_id": row.id,
        "name": row.name,
        "group": row.group,
        "labels": orjson.loads(row.labels),
    }


async def authenticate(ctx: RegistryContext, credential: str) -> dict[str, Any]:
    """Who holds ``credential`` (for the gateway): 401 unknown or wrong, 403 revoked."""
    return await asyncio.to_thread(_authenticate, ctx, credential)


# ---- enrollment tokens ----


class TokenState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    EXHAUSTED = "exhausted"
    REVOKED = "revoked"


def _token_state(row: sa.Row[Any], now: float) -> TokenState:
    if row.revoked_at is not None:
        return TokenState.REVOKED
    if row.expires_at <= now:
        return TokenState.EXPIRED
    if row.max_uses is not None and row.uses >= row.max_uses:
        return TokenState.EXHAUSTED
    return TokenState.ACTIVE


def _token_select() -> sa.Select[Any]:
    return sa.select(ENROLLMENT_TOKENS, GROUPS.c.name.label("group_name")).select_from(
        ENROLLMENT_TOKENS.outerjoin(GROUPS, ENROLLMENT_TOKENS.c.group_id == GROUPS.c.id)
    )


def _token_wire(row: sa.Row[Any], now: float) -> dict[str, Any]:
    return {
        "id": row.id,
        "description": row.description,
        "group": row.group_name,
        "labels": orjson.loads(row.labels),
        "max_uses": row.max_uses,
        "uses": row.uses,
        "uses_left": None if row.max_uses is None else max(row.max_uses - row.uses, 0),
        "state": _token_state(row, now).value,
        "created_at": rfc3339(row.created_at),
        "created_by": row.created_by,
        "expires_at": rfc3339(row.expires_at),
        "revoked_at": None if row.revoked_at is None else rfc3339(row.revoked_at),
    }


def _read_token(conn: Connection, token_id: str) -> dict[str, Any]:
    row = conn.execute(_token_select().where(ENROLLMENT_TOKENS.c.id == token_id)).first()
    if row is None:
        raise TokenNotFound(token_id)
    return _token_wire(row, time.time())


@dataclass(frozen=True)
class TokenSpec:
    """What an admin asks for: lifetime (s), uses (None: unlimited), defaults for its nodes."""

    ttl: int
    max_uses: int | None = None
    group: str | None = None
    labels: dict[str, str] | None = None
    description: str = ""


def _create_token(ctx: RegistryContext, spec: TokenSpec, actor: str) -> dict[str, Any]:
    labels = validate_labels(spec.labels or {})
    fingerprint = b64url(ca_fingerprint(ctx.data.ca_cert.read_bytes()))
    secret = new_secret()
    token_id = str(uuid.uuid4())
    now = time.time()
    with writer(ctx.engine).begin() as conn:
        gid = None if spec.group is None else group_id(conn, spec.group)
        conn.execute(
            sa.insert(ENROLLMENT_TOKENS).values(
                id=token_id,
                secret_sha256=secret_hash(secret),
                description=spec.description,
                group_id=gid,
                labels=orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode(),
                max_uses=spec.max_uses,
                uses=0,
                created_at=now,
                created_by=actor,
                expires_at=now + spec.ttl,
            )
        )
        token = _read_token(conn, token_id)
    return {**token, "token": f"{TOKEN_PREFIX}.{fingerprint}.{secret}"}


async def create_token(ctx: RegistryContext, spec: TokenSpec, *, actor: str) -> dict[str, Any]:
    """A new enrollment token; the only time its full text is returned."""
    token = await asyncio.to_thread(_create_token, ctx, spec, actor)
    await emit(
        ctx.redis,
        AuditEvent(
            actor,
            "enrollment_token.create",
            f"enrollment-token:{token['id']}",
            SERVICE,
            {k: token[k] for k in ("group", "labels", "max_uses", "expires_at", "description")},
        ),
    )
    return token


def _list_tokens(ctx: RegistryContext) -> list[dict[str, Any]]:
    now = time.time()
    with ctx.engine.connect() as conn:
        rows = conn.execute(_token_select().order_by(ENROLLMENT_TOKENS.c.created_at.desc())).all()
    return [_token_wire(row, now) for row in rows]


async def list_tokens(ctx: RegistryContext) -> list[dict[str, Any]]:
    """Every token (newest first), without secrets."""
    return await asyncio.to_thread(_list_tokens, ctx)


def _get_token(ctx: RegistryContext, token_id: str) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        return _read_token(conn, token_id)


async def get_token(ctx: RegistryContext, token_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(_get_token, ctx, token_id)


def _revoke_token(ctx: RegistryContext, token_id: str) -> dict[str, Any]:
    with writer(ctx.engine).begin() as conn:
        _read_token(conn, token_id)
        conn.execute(
            sa.update(ENROLLMENT_TOKENS)
            .where(ENROLLMENT_TOKENS.c.id == token_id, ENROLLMENT_TOKENS.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        return _read_token(conn, token_id)


async def revoke_token(ctx: RegistryContext, token_id: str, *, actor: str) -> dict[str, Any]:
    """Revoke a token (idempotent); nodes it enrolled keep their credentials."""
    token = await asyncio.to_thread(_revoke_token, ctx, token_id)
    await emit(
        ctx.redis,
        AuditEvent(actor, "enrollment_token.revoke", f"enrollment-token:{token_id}", SERVICE),
    )
    return token


# ---- enroll ----


@dataclass(frozen=True)
class EnrollRequest:
    machine_id: str
    facts: dict[str, Any]
    key: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class _Authority:
    """What allowed an enrollment."""

    via: str  # "enrollment-key", "enrollment-token:<id>" or "credential"
    token_id: str | None = None
    node_id: str | None = None  # re-enrollment


def _token_by_text(conn: Connection, text: str) -> sa.Row[Any]:
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise EnrollmentRefused("not an enrollment key or token")
    row = conn.execute(
        sa.select(ENROLLMENT_TOKENS).where(
            ENROLLMENT_TOKENS.c.secret_sha256 == secret_hash(parts[2])
        )
    ).first()
    if row is None:
        raise EnrollmentRefused("unknown enrollment token")
    return row


def _check_key(ctx: RegistryContext, conn: Connection, text: str) -> _Authority:
    if text.strip().startswith(f"{KeyKind.ENROLLMENT.value}."):
        if not load_key(ctx.data, KeyKind.ENROLLMENT).matches(text):
            raise EnrollmentRefused("wrong enrollment key (it may have been rotated)")
        return _Authority(via="enrollment-key")
    row = _token_by_text(conn, text)
    state = _token_state(row, time.time())
    if state is not TokenState.ACTIVE:
        raise EnrollmentRefused(f"the enrollment token is {state.value}")
    return _Authority(via=f"enrollment-token:{row.id}", token_id=row.id)


def _spend_token(conn: Connection, token_id: str) -> sa.Row[Any]:
    """Take one use of the token in this transaction, or refuse if it was spent meanwhile."""
    now = time.time()
    spent = conn.execute(
        sa.update(ENROLLMENT_TOKENS)
        .where(
            ENROLLMENT_TOKENS.c.id == token_id,
            ENROLLMENT_TOKENS.c.revoked_at.is_(None),
            ENROLLMENT_TOKENS.c.expires_at > now,
            sa.or_(
                ENROLLMENT_TOKENS.c.max_uses.is_(None),
                ENROLLMENT_TOKENS.c.uses < ENROLLMENT_TOKENS.c.max_uses,
            ),
        )
        .values(uses=ENROLLMENT_TOKENS.c.uses + 1)
    )
    row = conn.execute(sa.select(ENROLLMENT_TOKENS).where(ENROLLMENT_TOKENS.c.id == token_id)).one()
    if spent.rowcount != 1:
        raise EnrollmentRefused(f"the enrollment token is {_token_state(row, now).value}")
    return row


@dataclass(frozen=True)
class _Enrolled:
    node_id: str
    credential: str
    authority: _Authority
    duplicate_of: str | None
    reenrolled: bool


def _enroll(ctx: RegistryContext, request: EnrollRequest) -> _Enrolled:
    now = time.time()
    secret = new_secret()
    facts = orjson.dumps(request.facts, option=orjson.OPT_SORT_KEYS).decode()
    hostname = str(request.facts["hostname"])
    with writer(ctx.engine).begin() as conn:
        authority = _check_key(ctx, conn, request.key) if request.key is not None else None
        if request.credential is not None:
            node_id = _verify_credential(conn, request.credential)
            conn.execute(
                sa.update(NODE_CREDENTIALS)
                .where(NODE_CREDENTIALS.c.node_id == node_id)
                .values(secret_sha256=secret_hash(secret), created_at=now)
            )
            updated = conn.execute(
                sa.update(NODES)
                .where(NODES.c.id == node_id)
                .values(
                    # A name never changed from the host name follows the host name.
                    name=sa.case((NODES.c.name == NODES.c.hostname, hostname), else_=NODES.c.name),
                    hostname=hostname,
                    machine_id=request.machine_id,
                    facts=facts,
                    enrolled_at=now,
                    updated_at=now,
                )
            )
            if updated.rowcount != 1:
                raise CredentialRevoked(node_id)
            return _Enrolled(
                node_id,
                f"{CREDENTIAL_PREFIX}.{node_id}.{secret}",
                _Authority(via="credential", node_id=node_id),
                None,
                reenrolled=True,
            )
        if authority is None:
            raise BadRequest(
                "give an enrollment key or token ('key'), or the node's current credential",
                type_="/problems/enrollment-authority-missing",
            )
        group: int | None = None
        labels: dict[str, str] = {}
        if authority.token_id is not None:
            token = _spend_token(conn, authority.token_id)
            group = token.group_id
            labels = orjson.loads(token.labels)
        # The oldest unflagged holder of this machine id is the node it may replace.
        duplicate_of = conn.execute(
            sa.select(NODES.c.id)
            .where(NODES.c.machine_id == request.machine_id)
            .order_by(NODES.c.duplicate_of.is_not(None), NODES.c.created_at)
            .limit(1)
        ).scalar()
        node_id = str(uuid.uuid4())
        conn.execute(
            sa.insert(NODES).values(
                id=node_id,
                name=hostname,
                hostname=hostname,
                machine_id=request.machine_id,
                group_id=group,
                facts=facts,
                duplicate_of=duplicate_of,
                created_at=now,
                updated_at=now,
                enrolled_at=now,
            )
        )
        write_labels(conn, node_id, labels, now)
        conn.execute(
            sa.insert(NODE_CREDENTIALS).values(
                node_id=node_id, secret_sha256=secret_hash(secret), created_at=now
            )
        )
    return _Enrolled(
        node_id, f"{CREDENTIAL_PREFIX}.{node_id}.{secret}", authority, duplicate_of, False
    )


async def enroll(
    ctx: RegistryContext, request: EnrollRequest, *, subjects: list[str]
) -> dict[str, Any]:
    """Enroll (or re-enroll) a node; ``subjects`` name the caller for the backoff."""
    backoff = Backoff(ctx.redis, BACKOFF_BUCKET)
    await backoff.check(subjects)
    try:
        enrolled = await asyncio.to_thread(_enroll, ctx, request)
    except (Unauthorized, Forbidden):
        await backoff.fail(subjects)
        raise
    detail: dict[str, Any] = {
        "via": enrolled.authority.via,
        "hostname": request.facts["hostname"],
        "machine_id": request.machine_id,
    }
    if enrolled.duplicate_of is not None:
        detail["duplicate_of"] = enrolled.duplicate_of
    await emit(
        ctx.redis,
        AuditEvent(
            f"node:{enrolled.node_id}",
            "node.reenroll" if enrolled.reenrolled else "node.enroll",
            f"node:{enrolled.node_id}",
            SERVICE,
            detail,
        ),
    )
    return {
        "node_id": enrolled.node_id,
        "credential": enrolled.credential,
        "command_public_key": command_public_key(ctx.data),
        "gateway_url": ctx.settings.gateway_url,
        "heartbeat_interval": ctx.settings.heartbeat_interval,
    }

"""Users, roles, service clients and enrollment tokens (openapi/registry.yaml).

Every operation needs the ``admin`` scope (``change_own_password`` only a
user's token). The TypedDicts mirror the schemas of the same names; nothing
here imports Flet.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict, cast
from urllib.parse import quote

from sm_client.api.core import CoreApi

Scope = Literal[
    "nodes:read",
    "nodes:write",
    "metrics:read",
    "commands:run",
    "commands:read",
    "audit:read",
    "admin",
]
TokenState = Literal["active", "expired", "exhausted", "revoked"]


# --- users ---------------------------------------------------------------------------


class User(TypedDict):
    username: str
    role: str
    disabled: bool
    created_at: str
    updated_at: str


class UserList(TypedDict):
    items: list[User]
    total: int


class UserCreate(TypedDict):
    username: str
    password: str
    role: str


class UserUpdate(TypedDict, total=False):
    role: str
    disabled: bool
    password: str  # an administrator's reset: 8 … 1024 characters, never returned


class PasswordChange(TypedDict):
    current_password: str
    new_password: str


# --- roles ---------------------------------------------------------------------------


class Role(TypedDict):
    name: str
    scopes: list[Scope]
    builtin: bool
    description: str


class RoleList(TypedDict):
    items: list[Role]
    total: int


class RoleCreate(TypedDict):
    name: str
    scopes: list[Scope]
    description: NotRequired[str]


class RoleUpdate(TypedDict, total=False):
    scopes: list[Scope]
    description: str


# --- service clients -----------------------------------------------------------------


class ServiceClient(TypedDict):
    client_id: str
    role: str
    description: str
    created_at: str


class ServiceClientCreated(ServiceClient):
    client_secret: str


class ServiceClientList(TypedDict):
    items: list[ServiceClient]
    total: int


class ServiceClientCreate(TypedDict):
    client_id: str
    role: str
    description: NotRequired[str]


class ServiceClientUpdate(TypedDict, total=False):
    role: str
    description: str


# --- enrollment tokens ---------------------------------------------------------------


class EnrollmentToken(TypedDict):
    id: str
    description: str
    group: str | None
    labels: dict[str, str]
    max_uses: int | None
    uses: int
    uses_left: int | None
    state: TokenState
    created_at: str
    created_by: str
    expires_at: str
    revoked_at: str | None


class EnrollmentTokenCreated(EnrollmentToken):
    token: str  # smt1.<CA fingerprint>.<secret>, shown only this once


class EnrollmentTokenList(TypedDict):
    items: list[EnrollmentToken]


class EnrollmentTokenCreate(TypedDict, total=False):
    ttl: int  # seconds, 60 … 31536000 (default 86400)
    max_uses: int | None  # None: unlimited
    group: str
    labels: dict[str, str]
    description: str


def _seg(value: str) -> str:
    """A path segment, escaped."""
    return quote(value, safe="")


class AdminApi:
    """The admin area of the registry, over a signed-in :class:`CoreApi`."""

    def __init__(self, core: CoreApi) -> None:
        self.core = core

    # users
    async def list_users(self) -> UserList:
        return cast(UserList, await self.core.call("GET", "/api/v1/users"))

    async def get_user(self, username: str) -> User:
        return cast(User, await self.core.call("GET", f"/api/v1/users/{_seg(username)}"))

    async def create_user(self, body: UserCreate) -> User:
        return cast(User, await self.core.call("POST", "/api/v1/users", json=body))

    async def update_user(self, username: str, patch: UserUpdate) -> User:
        return cast(
            User, await self.core.call("PATCH", f"/api/v1/users/{_seg(username)}", json=patch)
        )

    async def reset_password(self, username: str, password: str) -> User:
        """Set ``username``'s password (an administrator's reset; no current password)."""
        return await self.update_user(username, {"password": password})

    async def delete_user(self, username: str) -> None:
        await self.core.call("DELETE", f"/api/v1/users/{_seg(username)}")

    async def change_own_password(self, body: PasswordChange) -> None:
        """The signed-in user's own password (a user's token; no scope needed)."""
        await self.core.call("POST", "/api/v1/users/me/password", json=body)

    # roles
    async def list_roles(self) -> RoleList:
        return cast(RoleList, await self.core.call("GET", "/api/v1/roles"))

    async def get_role(self, name: str) -> Role:
        return cast(Role, await self.core.call("GET", f"/api/v1/roles/{_seg(name)}"))

    async def create_role(self, body: RoleCreate) -> Role:
        return cast(Role, await self.core.call("POST", "/api/v1/roles", json=body))

    async def update_role(self, name: str, patch: RoleUpdate) -> Role:
        return cast(Role, await self.core.call("PATCH", f"/api/v1/roles/{_seg(name)}", json=patch))

    async def delete_role(self, name: str) -> None:
        await self.core.call("DELETE", f"/api/v1/roles/{_seg(name)}")

    # service clients
    async def list_clients(self) -> ServiceClientList:
        return cast(ServiceClientList, await self.core.call("GET", "/api/v1/clients"))

    async def get_client(self, client_id: str) -> ServiceClient:
        return cast(
            ServiceClient, await self.core.call("GET", f"/api/v1/clients/{_seg(client_id)}")
        )

    async def create_client(self, body: ServiceClientCreate) -> ServiceClientCreated:
        return cast(
            ServiceClientCreated, await self.core.call("POST", "/api/v1/clients", json=body)
        )

    async def update_client(self, client_id: str, patch: ServiceClientUpdate) -> ServiceClient:
        return cast(
            ServiceClient,
            await self.core.call("PATCH", f"/api/v1/clients/{_seg(client_id)}", json=patch),
        )

    async def delete_client(self, client_id: str) -> None:
        await self.core.call("DELETE", f"/api/v1/clients/{_seg(client_id)}")

    # enrollment tokens
    async def list_enrollment_tokens(self) -> EnrollmentTokenList:
        return cast(EnrollmentTokenList, await self.core.call("GET", "/api/v1/enrollment-tokens"))

    async def get_enrollment_token(self, token_id: str) -> EnrollmentToken:
        return cast(
            EnrollmentToken,
            await self.core.call("GET", f"/api/v1/enrollment-tokens/{_seg(token_id)}"),
        )

    async def create_enrollment_token(self, body: EnrollmentTokenCreate) -> EnrollmentTokenCreated:
        return cast(
            EnrollmentTokenCreated,
            await self.core.call("POST", "/api/v1/enrollment-tokens", json=body),
        )

    async def revoke_enrollment_token(self, token_id: str) -> EnrollmentToken:
        """Idempotent; the token stays listed as ``revoked``."""
        return cast(
            EnrollmentToken,
            await self.core.call("POST", f"/api/v1/enrollment-tokens/{_seg(token_id)}/revoke"),
        )

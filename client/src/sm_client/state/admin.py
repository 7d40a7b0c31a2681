"""The admin screen's view-model: users, roles, enrollment tokens, groups, service clients.

It holds one list (and its :class:`Load`) per tab, loads what a tab shows
(with the roles or groups its forms offer), and runs the actions the views
call. Each action returns ``None`` when the core accepted it (the list is
read again) or the :class:`Problem` it refused with; forms check their input
first with the ``check_*`` functions, which return ``{field: locale key}``.

A secret the core shows only once (an enrollment token's text, a service
client's secret) is kept in :attr:`AdminState.revealed` until the view
dismisses it; it is never written anywhere.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final, TypeVar, cast

from sm_client.api import ApiError, CoreApi
from sm_client.api.admin import (
    AdminApi,
    EnrollmentToken,
    EnrollmentTokenCreate,
    Role,
    RoleCreate,
    RoleUpdate,
    Scope,
    ServiceClient,
    ServiceClientCreate,
    ServiceClientUpdate,
    User,
    UserCreate,
    UserUpdate,
)
from sm_client.api.fleet import FleetApi, Group, GroupCreate, GroupPatch
from sm_client.state.feed import Feed, Message, Stop
from sm_client.state.observable import Load, Observable, Phase, Problem
from sm_shared.scopes import ADMIN, ALL_SCOPES

T = TypeVar("T")
Errors = dict[str, str]  # a form field → the locale key of what is wrong with it

SCOPES: Final = cast(tuple[Scope, ...], ALL_SCOPES)
# Enrollment token lifetimes a form offers (seconds).
TTL_CHOICES: Final = (3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)
DEFAULT_TTL: Final = 86400
# After a node comes online (maybe just enrolled: a token used, a group grown), the
# tokens or groups tab is read again this many seconds later (once per burst).
REFRESH_AFTER: Final = 1.0
MAX_USES: Final = 1_000_000

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
CLIENT_ID = re.compile(r"^[a-z][a-z0-9._-]{2,63}$")
GROUP_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
LABEL_PREFIX = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$")


class Tab(Enum):
    USERS = "users"
    ROLES = "roles"
    TOKENS = "tokens"
    GROUPS = "groups"
    CLIENTS = "clients"


@dataclass(frozen=True)
class Revealed:
    """A secret shown this once: ``kind`` is ``token`` or ``client``; ``name`` its id."""

    kind: str
    name: str
    secret: str


# --- form checks (pure: the views call them before the actions) ------------------------


def check_user(username: str, password: str, role: str) -> Errors:
    errors: Errors = {}
    if not username:
        errors["username"] = "admin.error.required"
    elif username == "me" or not USERNAME.match(username):
        errors["username"] = "admin.error.username"
    if len(password) < 8:
        errors["password"] = "admin.error.password_short"  # noqa: S105 (a locale key)
    elif len(password) > 1024:
        errors["password"] = "admin.error.too_long"  # noqa: S105 (a locale key)
    if not role:
        errors["role"] = "admin.error.required"
    return errors


def check_password(password: str, again: str) -> Errors:
    """A new password (an administrator's reset): long enough, typed the same twice."""
    errors: Errors = {}
    if len(password) < 8:
        errors["password"] = "admin.error.password_short"  # noqa: S105 (a locale key)
    elif len(password) > 1024:
        errors["password"] = "admin.error.too_long"  # noqa: S105 (a locale key)
    elif again != password:
        errors["again"] = "admin.error.password_mismatch"
    return errors


def check_role(name: str, scopes: list[Scope], description: str, *, new: bool = True) -> Errors:
    errors: Errors = {}
    if new and not name:
        errors["name"] = "admin.error.required"
    elif new and not ROLE_NAME.match(name):
        errors["name"] = "admin.error.role_name"
    if not scopes:
        errors["scopes"] = "admin.error.scopes"
    if len(description) > 200:
        errors["description"] = "admin.error.too_long"
    return errors


def check_client(client_id: str, role: str, description: str) -> Errors:
    errors: Errors = {}
    if not client_id:
        errors["client_id"] = "admin.error.required"
    elif client_id.startswith("sm-"):
        errors["client_id"] = "admin.error.reserved"
    elif not CLIENT_ID.match(client_id):
        errors["client_id"] = "admin.error.client_id"
    if not role:
        errors["role"] = "admin.error.required"
    if len(description) > 200:
        errors["description"] = "admin.error.too_long"
    return errors


def check_group(name: str, description: str) -> Errors:
    errors: Errors = {}
    if not name:
        errors["name"] = "admin.error.required"
    elif not GROUP_NAME.match(name):
        errors["name"] = "admin.error.group_name"
    if len(description) > 1000:
        errors["description"] = "admin.error.too_long"
    return errors


def parse_labels(text: str) -> dict[str, str] | None:
    """``env=prod, tier=web`` (commas or new lines) → a dict; None when malformed."""
    labels: dict[str, str] = {}
    for part in re.split(r"[,\n]", text):
        item = part.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _label_key_ok(key) or not LABEL_VALUE.match(value):
            return None
        labels[key] = value
    return labels if len(labels) <= 64 else None


def _label_key_ok(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not LABEL_PREFIX.match(prefix):
        return False
    return bool(LABEL_NAME.match(name))


def check_token(
    ttl: int, uses: str, group: str, labels: str, description: str
) -> tuple[EnrollmentTokenCreate, Errors]:
    """The request body the form describes, and what is wrong with it."""
    errors: Errors = {}
    body: EnrollmentTokenCreate = {"ttl": ttl}
    if not 60 <= ttl <= 31_536_000:
        errors["ttl"] = "admin.error.ttl"
    uses = uses.strip()
    if uses:
        if not uses.isdigit() or not 1 <= int(uses) <= MAX_USES:
            errors["uses"] = "admin.error.uses"
        else:
            body["max_uses"] = int(uses)
    else:
        body["max_uses"] = None
    if group:
        if not GROUP_NAME.match(group):
            errors["group"] = "admin.error.group_name"
        body["group"] = group
    parsed = parse_labels(labels)
    if parsed is None:
        errors["labels"] = "admin.error.labels"
    elif parsed:
        body["labels"] = parsed
    if len(description) > 1000:
        errors["description"] = "admin.error.too_long"
    elif description:
        body["description"] = description
    return body, errors


# --- the view-model -------------------------------------------------------------------


class AdminState(Observable):
    """What the admin screen shows; ``allowed`` is False without the ``admin`` scope."""

    def __init__(self, core: CoreApi, feed: Feed | None = None) -> None:
        super().__init__()
        self.core = core
        self.api = AdminApi(core)
        self.fleet = FleetApi(core)
        self.feed = feed
        self.tab = Tab.USERS
        self.users: list[User] = []
        self.roles: list[Role] = []
        self.tokens: list[EnrollmentToken] = []
        self.groups: list[Group] = []
        self.clients: list[ServiceClient] = []
        self.loads: dict[Tab, Load] = {tab: Load() for tab in Tab}
        self.revealed: Revealed | None = None
        self.busy = False
        self._stops: list[Stop] = []
        self._pending: asyncio.Task[None] | None = None

    @property
    def allowed(self) -> bool:
        return self.core.may(ADMIN)

    @property
    def me(self) -> str | None:
        """The signed-in user's name (None for the secret key): not to be deleted or disabled."""
        return self.core.username

    @property
    def role_names(self) -> list[str]:
        return [role["name"] for role in self.roles]

    @property
    def group_names(self) -> list[str]:
        return [group["name"] for group in self.groups]

    def load_of(self, tab: Tab) -> Load:
        return self.loads[tab]

    # --- life cycle -------------------------------------------------------------

    async def enter(self) -> None:
        """Load the current tab; follow the fleet; after a reconnect, load the tab again."""
        if self.feed is not None and not self._stops:
            self._stops = [
                self.feed.on_resync(self.refresh),
                self.feed.subscribe("fleet", self._on_fleet),
            ]
        await self.refresh()

    def leave(self) -> None:
        for stop in self._stops:
            stop()
        self._stops = []
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self.revealed = None

    def _on_fleet(self, message: Message) -> None:
        event = message.get("event") or {}
        if event.get("type") != "status" or event.get("status") != "online":
            return
        if self.tab not in (Tab.TOKENS, Tab.GROUPS):
            return
        if self._pending is None or self._pending.done():
            self._pending = asyncio.get_running_loop().create_task(self._refresh_soon())

    async def _refresh_soon(self) -> None:
        await asyncio.sleep(REFRESH_AFTER)
        await self.refresh()

    async def select(self, tab: Tab) -> None:
        if tab is not self.tab:
            self.tab = tab
            self.changed()
        await self.refresh()

    async def refresh(self) -> None:
        """Read the current tab's list (and what its forms offer) again."""
        tab = self.tab
        load = self.loads[tab]
        if not self.allowed:
            load.phase, load.problem = Phase.ERROR, Problem("forbidden", "", 403)
            self.changed()
            return
        if load.phase not in (Phase.READY, Phase.EMPTY):
            load.loading()
            self.changed()
        try:
            count = await self._read(tab)
        except ApiError as error:
            load.failed(error)
        else:
            load.ready(empty=count == 0)
        self.changed()

    async def _read(self, tab: Tab) -> int:
        if tab is Tab.USERS:
            users, roles = await asyncio.gather(self.api.list_users(), self.api.list_roles())
            self.users, self.roles = users["items"], roles["items"]
            return len(self.users)
        if tab is Tab.ROLES:
            self.roles = (await self.api.list_roles())["items"]
            return len(self.roles)
        if tab is Tab.TOKENS:
            tokens, groups = await asyncio.gather(
                self.api.list_enrollment_tokens(), self.fleet.list_groups()
            )
            self.tokens, self.groups = tokens["items"], groups
            return len(self.tokens)
        if tab is Tab.GROUPS:
            self.groups = await self.fleet.list_groups()
            return len(self.groups)
        clients, roles = await asyncio.gather(self.api.list_clients(), self.api.list_roles())
        self.clients, self.roles = clients["items"], roles["items"]
        return len(self.clients)

    async def _act(self, action: Callable[[], Awaitable[T]]) -> tuple[T | None, Problem | None]:
        """Run ``action``; on success read the current tab again."""
        self.busy = True
        self.changed()
        try:
            result = await action()
        except ApiError as error:
            self.busy = False
            self.changed()
            return None, Problem.of(error)
        self.busy = False
        await self.refresh()
        return result, None

    # --- users --------------------------------------------------------------------

    async def create_user(self, username: str, password: str, role: str) -> Problem | None:
        body: UserCreate = {"username": username, "password": password, "role": role}
        return (await self._act(lambda: self.api.create_user(body)))[1]

    async def set_role(self, username: str, role: str) -> Problem | None:
        patch: UserUpdate = {"role": role}
        return (await self._act(lambda: self.api.update_user(username, patch)))[1]

    async def set_disabled(self, username: str, disabled: bool) -> Problem | None:
        patch: UserUpdate = {"disabled": disabled}
        return (await self._act(lambda: self.api.update_user(username, patch)))[1]

    async def reset_password(
        self, username: str, password: str, again: str
    ) -> Errors | Problem | None:
        """Set a user's password: the form's errors, the core's refusal, or None when done."""
        errors = check_password(password, again)
        if errors:
            return errors
        return (await self._act(lambda: self.api.reset_password(username, password)))[1]

    async def delete_user(self, username: str) -> Problem | None:
        return (await self._act(lambda: self.api.delete_user(username)))[1]

    # --- roles --------------------------------------------------------------------

    async def create_role(self, name: str, scopes: list[Scope], description: str) -> Problem | None:
        body: RoleCreate = {"name": name, "scopes": scopes, "description": description}
        return (await self._act(lambda: self.api.create_role(body)))[1]

    async def update_role(self, name: str, scopes: list[Scope], description: str) -> Problem | None:
        patch: RoleUpdate = {"scopes": scopes, "description": description}
        return (await self._act(lambda: self.api.update_role(name, patch)))[1]

    async def delete_role(self, name: str) -> Problem | None:
        return (await self._act(lambda: self.api.delete_role(name)))[1]

    # --- enrollment tokens ----------------------------------------------------------

    async def create_token(self, body: EnrollmentTokenCreate) -> Problem | None:
        created, problem = await self._act(lambda: self.api.create_enrollment_token(body))
        if created is not None:
            self.revealed = Revealed("token", created["id"], created["token"])
            self.changed()
        return problem

    async def revoke_token(self, token_id: str) -> Problem | None:
        return (await self._act(lambda: self.api.revoke_enrollment_token(token_id)))[1]

    # --- groups -------------------------------------------------------------------

    async def create_group(self, name: str, description: str) -> Problem | None:
        body: GroupCreate = {"name": name, "description": description}
        return (await self._act(lambda: self.fleet.create_group(body)))[1]

    async def update_group(self, name: str, new_name: str, description: str) -> Problem | None:
        patch: GroupPatch = {"description": description}
        if new_name != name:
            patch["name"] = new_name
        return (await self._act(lambda: self.fleet.update_group(name, patch)))[1]

    async def delete_group(self, name: str) -> Problem | None:
        return (await self._act(lambda: self.fleet.delete_group(name)))[1]

    # --- service clients ----------------------------------------------------------

    async def create_client(self, client_id: str, role: str, description: str) -> Problem | None:
        body: ServiceClientCreate = {"client_id": client_id, "role": role}
        if description:
            body["description"] = description
        created, problem = await self._act(lambda: self.api.create_client(body))
        if created is not None:
            self.revealed = Revealed("client", created["client_id"], created["client_secret"])
            self.changed()
        return problem

    async def update_client(self, client_id: str, role: str, description: str) -> Problem | None:
        patch: ServiceClientUpdate = {"role": role, "description": description}
        return (await self._act(lambda: self.api.update_client(client_id, patch)))[1]

    async def delete_client(self, client_id: str) -> Problem | None:
        return (await self._act(lambda: self.api.delete_client(client_id)))[1]

    def dismiss_revealed(self) -> None:
        """Forget the secret shown once."""
        if self.revealed is not None:
            self.revealed = None
            self.changed()

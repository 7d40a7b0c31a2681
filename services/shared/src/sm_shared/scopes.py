"""OAuth2 scopes and the built-in roles (named sets of scopes)."""

from typing import Final

NODES_READ: Final = "nodes:read"
NODES_WRITE: Final = "nodes:write"
METRICS_READ: Final = "metrics:read"
COMMANDS_RUN: Final = "commands:run"
COMMANDS_READ: Final = "commands:read"
AUDIT_READ: Final = "audit:read"
ADMIN: Final = "admin"
# Operations only the core's own services call (authenticating agents, reporting
# their status). Held by the built-in service client alone, never by a role.
SERVICE: Final = "service"

ALL_SCOPES: Final[tuple[str, ...]] = (
    NODES_READ,
    NODES_WRITE,
    METRICS_READ,
    COMMANDS_RUN,
    COMMANDS_READ,
    AUDIT_READ,
    ADMIN,
)

BUILTIN_ROLES: Final[dict[str, tuple[str, ...]]] = {
    "viewer": (NODES_READ, METRICS_READ, COMMANDS_READ),
    "operator": (NODES_READ, NODES_WRITE, METRICS_READ, COMMANDS_RUN, COMMANDS_READ, AUDIT_READ),
    "admin": ALL_SCOPES,
}


def parse_scope(scope: str) -> frozenset[str]:
    """Split an OAuth2 ``scope`` string into its scopes."""
    return frozenset(scope.split())

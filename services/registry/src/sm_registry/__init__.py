"""Server Manager registry: nodes, groups, labels, enrollment, users, roles, OAuth2 tokens."""

from sm_registry.app import create_app
from sm_registry.settings import RegistrySettings

__all__ = ["RegistrySettings", "create_app"]

"""The registry's ASGI app."""

from __future__ import annotations

import connexion

from sm_registry.settings import RegistrySettings
from sm_shared.api_app import create_service_app


def create_app(settings: RegistrySettings) -> connexion.AsyncApp:
    return create_service_app(
        service="registry", settings=settings, database_url=settings.database_url
    )

"""The commands service's ASGI app."""

from __future__ import annotations

import connexion

from sm_commands.settings import CommandsSettings
from sm_shared.api_app import create_service_app


def create_app(settings: CommandsSettings) -> connexion.AsyncApp:
    return create_service_app(
        service="commands", settings=settings, database_url=settings.database_url
    )

"""The registry's ASGI app."""

from __future__ import annotations

import connexion
from sm_shared.api_app import create_service_app
from sm_shared.database import create_database_engine

from sm_registry.db import create_tables
from sm_registry.settings import RegistrySettings


def create_app(settings: RegistrySettings) -> connexion.AsyncApp:
    # Tables are created when the app is built (not at import), before it serves.
    engine = create_database_engine(settings.database_url)
    try:
        create_tables(engine)
    finally:
        engine.dispose()
    return create_service_app(
        service="registry", settings=settings, database_url=settings.database_url
    )

"""The registry's ASGI app."""

from __future__ import annotations

import connexion

from sm_registry import accounts, inventory, roles  # noqa: F401 (their tables join the metadata)
from sm_registry.api.oauth import VALIDATION_PROBLEMS, request_problem
from sm_registry.db import create_tables
from sm_registry.settings import RegistrySettings
from sm_shared.api_app import create_service_app
from sm_shared.database import create_database_engine


def create_app(settings: RegistrySettings) -> connexion.AsyncApp:
    # Tables are created when the app is built (not at import), before it serves.
    engine = create_database_engine(settings.database_url)
    try:
        create_tables(engine)
    finally:
        engine.dispose()
    app = create_service_app(
        service="registry", settings=settings, database_url=settings.database_url
    )
    # The token endpoint answers malformed requests the RFC 6749 way, not as problem+json.
    for problem in VALIDATION_PROBLEMS:
        app.add_error_handler(problem, request_problem)
    return app

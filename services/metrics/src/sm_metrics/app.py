"""The metrics service's ASGI app."""

from __future__ import annotations

import connexion

from sm_metrics.schema import create_tables
from sm_metrics.settings import MetricsSettings
from sm_shared.api_app import create_service_app
from sm_shared.database import create_database_engine


def create_app(settings: MetricsSettings) -> connexion.AsyncApp:
    # Tables are created when the app is built (not at import), before it serves.
    engine = create_database_engine(settings.database_url)
    try:
        create_tables(engine)
    finally:
        engine.dispose()
    return create_service_app(
        service="metrics", settings=settings, database_url=settings.database_url
    )

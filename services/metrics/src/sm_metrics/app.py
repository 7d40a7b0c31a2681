"""The metrics service's ASGI app."""

from __future__ import annotations

import connexion

from sm_metrics.settings import MetricsSettings
from sm_shared.api_app import create_service_app


def create_app(settings: MetricsSettings) -> connexion.AsyncApp:
    return create_service_app(
        service="metrics", settings=settings, database_url=settings.database_url
    )

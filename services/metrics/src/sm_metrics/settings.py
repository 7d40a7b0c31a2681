"""Settings of the metrics service (``SM_`` environment variables)."""

from __future__ import annotations

from sm_shared.settings import CoreSettings


class MetricsSettings(CoreSettings):
    metrics_database_url: str | None = None

    @property
    def database_url(self) -> str:
        return self.metrics_database_url or self.data.database_url("metrics")

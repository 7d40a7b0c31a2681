"""Server Manager metrics service: heartbeat ingest, tiered history, trend queries."""

from sm_metrics.app import create_app
from sm_metrics.settings import MetricsSettings

__all__ = ["MetricsSettings", "create_app"]

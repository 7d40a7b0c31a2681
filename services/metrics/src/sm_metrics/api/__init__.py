"""Handlers of ``openapi/metrics.yaml`` (one module per tag)."""

"""Handlers of ``openapi/commands.yaml`` (one module per tag)."""

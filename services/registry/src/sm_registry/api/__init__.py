"""Handlers of ``openapi/registry.yaml``: one module per tag, function names = operationIds."""

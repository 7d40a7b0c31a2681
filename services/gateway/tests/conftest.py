"""The gateway's tests use the root conftest's registry and gateway under short names.

``registry`` is ``registry_api`` (the real registry, driven as an admin) and
``gateway`` is ``gateway_service`` (a real gateway in the test's event loop);
the registry tells enrolling agents this gateway's URL.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def registry_gateway_url(gateway_url: str) -> str:
    return gateway_url


@pytest.fixture
def registry(registry_api: Any) -> Any:
    return registry_api


@pytest.fixture
def gateway(gateway_service: Any) -> Any:
    return gateway_service

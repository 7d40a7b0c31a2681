"""The agent's tests check what the agent sends against the protocol schema itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "openapi" / "agent-protocol.json"

Validate = Callable[[str, Any], None]


@pytest.fixture(scope="session")
def validate() -> Validate:
    """``validate(definition, value)``: raise unless ``value`` is a valid ``definition``."""
    definitions = json.loads(SCHEMA_FILE.read_text())["definitions"]

    def check(definition: str, value: Any) -> None:
        jsonschema.validate(
            value,
            {"definitions": definitions, "$ref": f"#/definitions/{definition}"},
            cls=jsonschema.Draft7Validator,
        )

    return check

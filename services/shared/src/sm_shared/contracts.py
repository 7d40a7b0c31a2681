"""Where the OpenAPI and protocol documents of ``openapi/`` are found at run time.

A light module (standard library only): the gateway and tests import it
without pulling in Connexion or SQLAlchemy.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def spec_path(package: str, name: str) -> Path:
    """The OpenAPI document ``name`` (e.g. ``registry.yaml``).

    A wheel carries it inside ``package`` (``openapi/<name>``); a checkout
    reads it from the repository's ``openapi/`` folder.
    """
    packaged = resources.files(package) / "openapi" / name
    if packaged.is_file():
        return Path(str(packaged))
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "openapi" / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"OpenAPI document {name} not found for {package}")

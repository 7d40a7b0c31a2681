"""Handlers of the trust bootstrap (tag ``trust``): the CA certificate and the token keys."""

from __future__ import annotations

import asyncio
from typing import Any

from connexion.lifecycle import ConnexionResponse

from sm_registry.context import current
from sm_shared.token_keys import public_jwks

PEM_MEDIA_TYPE = "application/x-pem-file"


async def ca_certificate() -> ConnexionResponse:
    pem = await asyncio.to_thread(current().data.ca_cert.read_bytes)
    return ConnexionResponse(status_code=200, body=pem, content_type=PEM_MEDIA_TYPE)


async def jwks() -> dict[str, Any]:
    # Read on every request: keys rotated by `smctl keys rotate` show at once.
    return await asyncio.to_thread(public_jwks, current().data)

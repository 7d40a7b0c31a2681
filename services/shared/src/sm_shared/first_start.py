"""What a core's first start creates in its data directory (all files 0600)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from sm_shared.access_keys import ensure_access_keys
from sm_shared.command_keys import ensure_command_key
from sm_shared.datadir import DataDir, write_private
from sm_shared.pki import ensure_pki
from sm_shared.token_keys import ensure_token_keys


def ensure_service_secret(data: DataDir) -> bool:
    if data.service_secret.exists():
        return False
    write_private(data.service_secret, secrets.token_urlsafe(32).encode())
    return True


def initialize(data: DataDir, server_names: Iterable[str] = ()) -> bool:
    """Create whatever key material is missing; True on a first start."""
    data.ensure()
    created = [
        ensure_pki(data, server_names),
        ensure_access_keys(data),
        ensure_token_keys(data),
        ensure_command_key(data),
        ensure_service_secret(data),
    ]
    return any(created)

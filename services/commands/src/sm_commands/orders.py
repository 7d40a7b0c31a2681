"""Signed orders and the frames that carry them to agents (agent-protocol.json).

An ``ExecutionOrder`` is what the core signs: its text is
``orjson.dumps(order, option=OPT_SORT_KEYS)`` and its signature Ed25519 by the
command key over those bytes, unpadded base64url. The ``execute`` frame
carries both and is what a gateway sends as it is; a ``cancel`` frame is not
signed (it can only stop what a signed order started).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sm_shared.access_keys import b64url

ORDER_VERSION: Final = 1
PROTOCOL_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What one execution's order is made of."""

    execution_id: str
    command_id: str
    node_id: str
    kind: str
    spec: dict[str, Any]
    timeout: int
    issued_at: float
    expires_at: float


def order(facts: OrderFacts) -> dict[str, Any]:
    return {
        "v": ORDER_VERSION,
        "execution_id": facts.execution_id,
        "command_id": facts.command_id,
        "node_id": facts.node_id,
        "kind": facts.kind,
        "issued_at": facts.issued_at,
        "expires_at": facts.expires_at,
        "timeout": facts.timeout,
        facts.kind: facts.spec,
    }


def execute_frame(key: Ed25519PrivateKey, facts: OrderFacts) -> bytes:
    """The signed ``execute`` message for ``facts`` (JSON bytes)."""
    text = orjson.dumps(order(facts), option=orjson.OPT_SORT_KEYS)
    return orjson.dumps(
        {
            "v": PROTOCOL_VERSION,
            "type": "execute",
            "execution_id": facts.execution_id,
            "order": text.decode(),
            "signature": b64url(key.sign(text)),
        }
    )


def cancel_frame(execution_id: str) -> bytes:
    return orjson.dumps({"v": PROTOCOL_VERSION, "type": "cancel", "execution_id": execution_id})

"""The agent protocol as the gateway applies it (contract: ``openapi/agent-protocol.json``).

Every incoming message is decoded with orjson and checked by a validator
compiled once per message type with fastjsonschema; a violation becomes a
:class:`ProtocolError` carrying the close code the contract assigns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum
from pathlib import Path
from typing import Any, Final

import fastjsonschema
import orjson

from sm_shared.contracts import spec_path

SCHEMA_NAME: Final = "agent-protocol.json"
# Versions this gateway speaks, oldest first.
SUPPORTED_VERSIONS: Final[tuple[int, ...]] = (1,)
AGENT_MESSAGE_TYPES: Final = ("hello", "heartbeat", "facts")
GATEWAY_MESSAGE_TYPES: Final = ("welcome", "ack")
# The range the contract allows for a welcome's backlog_rate (heartbeats per second).
BACKLOG_RATE_RANGE: Final = (0.1, 1000.0)
MAX_REASON_BYTES: Final = 123  # RFC 6455: a close reason fits in a control frame

Validator = Callable[[Any], Any]


class CloseCode(IntEnum):
    """WebSocket close codes of the protocol (``x-close-codes`` in the schema)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    UNSUPPORTED_VERSION = 4001
    REVOKED = 4003
    REPLACED = 4004


class ProtocolError(Exception):
    """A message that ends the connection with ``code``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason

    @property
    def close_reason(self) -> str:
        return self.reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")


def load_schema(path: Path | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = orjson.loads(
        (path or spec_path("sm_gateway", SCHEMA_NAME)).read_bytes()
    )
    return schema


def compile_validators(schema: dict[str, Any], names: Iterable[str]) -> dict[str, Validator]:
    """One compiled validator per definition of ``schema`` named in ``names``."""
    definitions = schema["definitions"]
    # The definition itself at the top, not a $ref to it: fastjsonschema names a
    # referenced definition's function case-insensitively, so the message
    # ``facts`` would be validated as the object ``Facts``.
    return {
        name: fastjsonschema.compile({"definitions": definitions, **definitions[name]})
        for name in names
    }


def decode_message(raw: str | bytes, validators: Mapping[str, Validator]) -> dict[str, Any]:
    """A text frame holding a JSON object whose ``type`` has a validator, validated;
    ProtocolError (1003 binary, 1007 not a JSON object, 1008 schema) otherwise."""
    if isinstance(raw, bytes):
        raise ProtocolError(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(CloseCode.INVALID_DATA, f"not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(CloseCode.INVALID_DATA, "a message must be a JSON object")
    kind = message.get("type")
    validator = validators.get(kind) if isinstance(kind, str) else None
    if validator is None or not isinstance(kind, str):
        raise ProtocolError(CloseCode.POLICY_VIOLATION, f"unknown message type {str(kind)[:40]!r}")
    check(validator, kind, message)
    return message


def check(validator: Validator, kind: str, message: dict[str, Any]) -> None:
    try:
        validator(message)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise ProtocolError(CloseCode.POLICY_VIOLATION, f"{kind}: {exc.message}") from exc


class Protocol:
    """Decoding and validation of agent messages; encoding of gateway messages."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.close_codes: dict[int, str] = {int(k): v for k, v in schema["x-close-codes"].items()}
        self._validators = compile_validators(
            schema, (*AGENT_MESSAGE_TYPES, *GATEWAY_MESSAGE_TYPES)
        )
        self._incoming = {kind: self._validators[kind] for kind in AGENT_MESSAGE_TYPES}

    @classmethod
    def load(cls) -> Protocol:
        return cls(load_schema())

    def decode(self, raw: str | bytes) -> dict[str, Any]:
        """An agent message, validated; ProtocolError otherwise."""
        return decode_message(raw, self._incoming)

    def validate(self, kind: str, message: dict[str, Any]) -> None:
        check(self._validators[kind], kind, message)

    def negotiate(self, hello: dict[str, Any]) -> int:
        """The highest version both sides speak; ProtocolError(4001) when none."""
        shared: set[int] = set(SUPPORTED_VERSIONS).intersection(hello["versions"])
        if not shared:
            spoken = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
            raise ProtocolError(
                CloseCode.UNSUPPORTED_VERSION,
                f"unsupported protocol version; gateway speaks {spoken}",
            )
        return max(shared)

    def welcome(
        self, version: int, node_id: str, heartbeat_interval: float, backlog_rate: float
    ) -> str:
        message = {
            "v": version,
            "type": "welcome",
            "node_id": node_id,
            "heartbeat_interval": heartbeat_interval,
            "backlog_rate": backlog_rate,
        }
        # What the gateway sends obeys the contract as strictly as what it receives.
        self.validate("welcome", message)
        return orjson.dumps(message).decode()

    def ack(self, version: int, upto: int) -> str:
        message = {"v": version, "type": "ack", "upto": upto}
        self.validate("ack", message)
        return orjson.dumps(message).decode()


def backlog_rate(budget: float, connections: int) -> float:
    """A connection's share of the gateway's backlog budget, within the contract's range."""
    low, high = BACKLOG_RATE_RANGE
    return round(min(high, max(low, budget / max(1, connections))), 3)

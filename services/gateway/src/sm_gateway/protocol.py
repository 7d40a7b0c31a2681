"""The agent protocol as the gateway applies it (contract: ``openapi/agent-protocol.json``).

Every incoming message is decoded and validated in one pass by a msgspec
decoder of the Structs in ``agent_messages`` (which mirror the schema); a
violation becomes a :class:`ProtocolError` carrying the close code the
contract assigns. The gateway's own messages are checked the same way before
they are sent; so are the ``execute`` and ``cancel`` frames the core writes
to the inbox (:meth:`Protocol.delivery`), which are then sent as written.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson

from sm_gateway.agent_messages import (
    AGENT_MESSAGES,
    GATEWAY_MESSAGES,
    AgentMessage,
    GatewayMessage,
    Hello,
)
from sm_shared.contracts import spec_path

SCHEMA_NAME: Final = "agent-protocol.json"
# Versions this gateway speaks, oldest first.
SUPPORTED_VERSIONS: Final[tuple[int, ...]] = (1,)
AGENT_MESSAGE_TYPES: Final = tuple(AGENT_MESSAGES)
GATEWAY_MESSAGE_TYPES: Final = tuple(GATEWAY_MESSAGES)
# Inbox deliveries that are gateway messages, sent to the agent as the core wrote them.
DELIVERY_KINDS: Final = ("execute", "cancel")
# The range the contract allows for a welcome's backlog_rate (heartbeats per second).
BACKLOG_RATE_RANGE: Final = (0.1, 1000.0)
MAX_REASON_BYTES: Final = 123  # RFC 6455: a close reason fits in a control frame


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


class Protocol:
    """Decoding and validation of agent messages; encoding of gateway messages."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.close_codes: dict[int, str] = {int(k): v for k, v in schema["x-close-codes"].items()}
        self._decoder = msgspec.json.Decoder(AgentMessage)
        # A union even where one type is meant: decoding a tagged Struct alone
        # does not require its tag (``type``).
        self._outgoing = msgspec.json.Decoder(GatewayMessage)

    @classmethod
    def load(cls) -> Protocol:
        return cls(load_schema())

    def decode(self, raw: str | bytes) -> AgentMessage:
        """An agent message, validated; ProtocolError (1003 binary, 1007 not a JSON
        object, 1008 schema: unknown type, wrong version, any violation) otherwise."""
        if isinstance(raw, bytes):
            raise ProtocolError(CloseCode.UNSUPPORTED_DATA, "binary frames are not accepted")
        try:
            message: AgentMessage = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise violation(raw, exc) from exc
        except msgspec.DecodeError as exc:
            raise ProtocolError(CloseCode.INVALID_DATA, f"not JSON: {exc}") from exc
        return message

    def validate(self, kind: str, message: dict[str, Any]) -> bytes:
        """``message`` (a gateway message) as JSON, checked like the agent's; ProtocolError otherwise."""
        encoded = orjson.dumps(message)
        try:
            decoded = self._outgoing.decode(encoded)
        except msgspec.ValidationError as exc:
            raise ProtocolError(CloseCode.POLICY_VIOLATION, f"{kind}: {exc}") from exc
        if not isinstance(decoded, GATEWAY_MESSAGES[kind]):
            raise ProtocolError(CloseCode.POLICY_VIOLATION, f"{kind}: not a {kind} message")
        return encoded

    def negotiate(self, hello: Hello) -> int:
        """The highest version both sides speak; ProtocolError(4001) when none."""
        shared: set[int] = set(SUPPORTED_VERSIONS).intersection(hello.versions)
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
        return self.validate("welcome", message).decode()

    def ack(self, version: int, upto: int) -> str:
        return self.validate("ack", {"v": version, "type": "ack", "upto": upto}).decode()

    def result_ack(self, version: int, execution_id: str, upto: int) -> str:
        message = {"v": version, "type": "result_ack", "execution_id": execution_id, "upto": upto}
        return self.validate("result_ack", message).decode()

    def delivery(self, kind: str, frame: bytes) -> str | None:
        """The text of an inbox ``frame`` if it is a valid gateway message of ``kind``
        (``execute``, ``cancel``) for version ``v``; None otherwise. Never re-encoded:
        the agent checks the signature over the order exactly as the core wrote it."""
        if kind not in DELIVERY_KINDS:
            return None
        try:
            decoded = self._outgoing.decode(frame)
            text = frame.decode()
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError):
            return None
        return text if isinstance(decoded, GATEWAY_MESSAGES[kind]) else None


def violation(raw: str, error: msgspec.ValidationError) -> ProtocolError:
    """1008 for a JSON object that breaks the schema, 1007 when the frame is not
    a JSON object at all (msgspec stops at the first violation, so the rest of
    the frame is read again here, off the hot path)."""
    try:
        document = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return ProtocolError(CloseCode.INVALID_DATA, f"not JSON: {exc}")
    if not isinstance(document, dict):
        return ProtocolError(CloseCode.INVALID_DATA, "a message must be a JSON object")
    return ProtocolError(CloseCode.POLICY_VIOLATION, str(error))


def backlog_rate(budget: float, connections: int) -> float:
    """A connection's share of the gateway's backlog budget, within the contract's range."""
    low, high = BACKLOG_RATE_RANGE
    return round(min(high, max(low, budget / max(1, connections))), 3)

"""The clients' event stream protocol (contract: ``openapi/events-protocol.json``).

Client messages are decoded with orjson and checked by validators compiled
with fastjsonschema; answers are encoded here. Topics: ``fleet`` (the
``events`` channel; scope ``nodes:read``), ``node:<id>`` (``live:{id}``;
scope ``metrics:read``) and ``command:<id>`` (``command:{id}``, where the
commands service publishes progress; scope ``commands:read``).
"""

from __future__ import annotations

import http
from collections.abc import Iterable
from enum import IntEnum
from typing import Any, Final

import orjson

from sm_gateway.schema_validators import compile_validators, decode_message
from sm_shared.contracts import spec_path
from sm_shared.scopes import COMMANDS_READ, METRICS_READ, NODES_READ
from sm_shared.streams import EVENTS_CHANNEL, command_channel, live_metrics_channel

SCHEMA_NAME: Final = "events-protocol.json"
CLIENT_MESSAGE_TYPES: Final = ("subscribe", "unsubscribe")
SERVER_MESSAGE_TYPES: Final = ("subscribed", "error")
FLEET: Final = "fleet"
NODE_PREFIX: Final = "node:"
COMMAND_PREFIX: Final = "command:"
# A token must carry at least one of these to open the stream at all.
STREAM_SCOPES: Final = frozenset({NODES_READ, METRICS_READ, COMMANDS_READ})


class EventCloseCode(IntEnum):
    """Close codes of the event stream (``x-close-codes`` in the schema) beyond the agent's."""

    FEED_LOST = 1011
    TOO_SLOW = 4008
    TOKEN_EXPIRED = 4401


def topic_scope(topic: str) -> str:
    if topic == FLEET:
        return NODES_READ
    return COMMANDS_READ if topic.startswith(COMMAND_PREFIX) else METRICS_READ


def topic_channel(topic: str) -> str:
    """The Redis pub/sub channel behind a topic."""
    if topic == FLEET:
        return EVENTS_CHANNEL
    if topic.startswith(COMMAND_PREFIX):
        return command_channel(topic.removeprefix(COMMAND_PREFIX))
    return live_metrics_channel(topic.removeprefix(NODE_PREFIX))


def is_command_topic(topic: str) -> bool:
    return topic.startswith(COMMAND_PREFIX)


def problem(status: int, detail: str, topics: Iterable[str]) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "topics": sorted(topics),
    }


class EventProtocol:
    def __init__(self) -> None:
        schema = orjson.loads(spec_path("sm_gateway", SCHEMA_NAME).read_bytes())
        self.close_codes: dict[int, str] = {int(k): v for k, v in schema["x-close-codes"].items()}
        self._validators = compile_validators(
            schema, (*CLIENT_MESSAGE_TYPES, *SERVER_MESSAGE_TYPES)
        )
        self._incoming = {kind: self._validators[kind] for kind in CLIENT_MESSAGE_TYPES}

    def decode(self, raw: str | bytes) -> dict[str, Any]:
        """A client message, validated; ProtocolError (1003/1007/1008) otherwise."""
        return decode_message(raw, self._incoming)

    def subscribed(self, topics: Iterable[str], request_id: str | None) -> bytes:
        return self._encode("subscribed", {"topics": sorted(topics)}, request_id)

    def error(self, body: dict[str, Any], request_id: str | None) -> bytes:
        return self._encode("error", {"problem": body}, request_id)

    def _encode(self, kind: str, fields: dict[str, Any], request_id: str | None) -> bytes:
        message: dict[str, Any] = {"type": kind, **fields}
        if request_id is not None:
            message["id"] = request_id
        self._validators[kind](message)  # what the gateway sends obeys the contract too
        return orjson.dumps(message)


def fleet_event(raw: bytes) -> bytes:
    """The client message for an ``events`` channel message (embedded as published)."""
    return orjson.dumps({"type": "event", "topic": FLEET, "event": orjson.Fragment(raw)})


def progress_event(topic: str, raw: bytes) -> bytes:
    """The client message for a ``command:{id}`` channel message (embedded as published)."""
    return orjson.dumps({"type": "progress", "topic": topic, "event": orjson.Fragment(raw)})


def client_message(topic: str, raw: bytes) -> bytes:
    """What a client holding ``topic`` is sent for a message of the topic's channel."""
    if topic == FLEET:
        return fleet_event(raw)
    if is_command_topic(topic):
        return progress_event(topic, raw)
    return raw  # live:{node} messages are published in the client's format already

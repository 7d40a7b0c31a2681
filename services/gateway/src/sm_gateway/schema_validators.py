"""Messages checked against a JSON Schema by validators fastjsonschema compiles
(the clients' event stream, ``openapi/events-protocol.json``; the agent
protocol uses the Structs of ``agent_messages``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import fastjsonschema
import orjson

from sm_gateway.protocol import CloseCode, ProtocolError

Validator = Callable[[Any], Any]


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

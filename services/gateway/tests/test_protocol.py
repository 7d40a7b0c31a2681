"""The protocol agrees with the contract (openapi/agent-protocol.json); the exhaustive
comparison of the Structs with the schema is test_protocol_structs.py."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import msgspec
import orjson
import pytest

from sm_gateway.agent_messages import Hello
from sm_gateway.protocol import (
    AGENT_MESSAGE_TYPES,
    SUPPORTED_VERSIONS,
    CloseCode,
    Protocol,
    ProtocolError,
    backlog_rate,
    load_schema,
)

SCHEMA = load_schema()


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return Protocol(SCHEMA)


def _examples(name: str) -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = SCHEMA["definitions"][name]["examples"]
    return examples


def test_the_schema_is_valid_draft_7() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_close_codes_match_the_contract(protocol: Protocol) -> None:
    assert set(protocol.close_codes) == {int(code) for code in CloseCode}


def test_versions_match_the_contract() -> None:
    assert tuple(SCHEMA["x-protocol-versions"]) == SUPPORTED_VERSIONS


@pytest.mark.parametrize("name", AGENT_MESSAGE_TYPES)
def test_agent_examples_pass_both_validators(protocol: Protocol, name: str) -> None:
    for example in _examples(name):
        jsonschema.validate(example, SCHEMA, cls=jsonschema.Draft7Validator)
        assert msgspec.to_builtins(protocol.decode(orjson.dumps(example).decode())) == example


def test_welcome_obeys_the_contract(protocol: Protocol) -> None:
    welcome = orjson.loads(protocol.welcome(1, "node-1", 5.0, 20.0))
    jsonschema.validate(welcome, SCHEMA, cls=jsonschema.Draft7Validator)
    assert welcome == _examples("welcome")[0] | {"node_id": "node-1"}
    with pytest.raises(ProtocolError):
        protocol.welcome(1, "node-1", 0.5, 20.0)  # below the contract's minimum: never sent
    with pytest.raises(ProtocolError):
        protocol.welcome(1, "node-1", 5.0, 0.0)


def test_ack_obeys_the_contract(protocol: Protocol) -> None:
    ack = orjson.loads(protocol.ack(1, 12))
    jsonschema.validate(ack, SCHEMA, cls=jsonschema.Draft7Validator)
    assert ack == _examples("ack")[0]
    with pytest.raises(ProtocolError):
        protocol.ack(1, 0)  # nothing to acknowledge is never sent


def test_result_ack_obeys_the_contract(protocol: Protocol) -> None:
    ack = orjson.loads(protocol.result_ack(1, "x_0b5f1d2c3e4a5b6c7d8e9f00", 3))
    jsonschema.validate(ack, SCHEMA, cls=jsonschema.Draft7Validator)
    assert ack == _examples("result_ack")[0]
    assert orjson.loads(protocol.result_ack(1, "x_1", 0))["upto"] == 0  # refused, started: seq 0
    with pytest.raises(ProtocolError):
        protocol.result_ack(1, "not an id", 1)


@pytest.mark.parametrize("kind", ["execute", "cancel"])
def test_deliveries_pass_as_written_when_valid(protocol: Protocol, kind: str) -> None:
    example = _examples(kind)[0]
    # Any spacing the core chose is kept: the frame is sent as written, never re-encoded.
    frame = orjson.dumps(example).replace(b'","', b'", "')
    assert protocol.delivery(kind, frame) == frame.decode()
    wrong_kind = "cancel" if kind == "execute" else "execute"
    assert protocol.delivery(wrong_kind, frame) is None
    assert protocol.delivery("revoke", frame) is None
    broken = {**example, "execution_id": "../etc"}
    assert protocol.delivery(kind, orjson.dumps(broken)) is None
    assert protocol.delivery(kind, orjson.dumps({**example, "v": 2})) is None
    assert protocol.delivery(kind, b"\xff{not json") is None


@pytest.mark.parametrize(
    ("budget", "connections", "rate"),
    [
        (2000.0, 1, 1000.0),  # capped by the contract's maximum
        (2000.0, 0, 1000.0),
        (2000.0, 100, 20.0),
        (2000.0, 10_000, 0.2),
        (2000.0, 100_000, 0.1),  # never below the contract's minimum
    ],
)
def test_backlog_rate_divides_the_budget(budget: float, connections: int, rate: float) -> None:
    assert backlog_rate(budget, connections) == rate


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda m: m.update(type="heartbeet"), CloseCode.POLICY_VIOLATION),
        (lambda m: m.pop("seq"), CloseCode.POLICY_VIOLATION),
        (lambda m: m.update(seq=1.5), CloseCode.POLICY_VIOLATION),
        (lambda m: m.update(seq=True), CloseCode.POLICY_VIOLATION),
        (lambda m: m["sample"].update(extra=1), CloseCode.POLICY_VIOLATION),
        (lambda m: m["sample"]["memory"].update(total=-1), CloseCode.POLICY_VIOLATION),
        (lambda m: m["sample"].update(load=[1, 2, 3, 4]), CloseCode.POLICY_VIOLATION),
    ],
)
def test_violations_agree_between_jsonschema_and_the_compiled_validator(
    protocol: Protocol, mutate: Any, code: CloseCode
) -> None:
    message = copy.deepcopy(_examples("heartbeat")[0])
    mutate(message)
    assert not jsonschema.Draft7Validator(SCHEMA).is_valid(message)
    with pytest.raises(ProtocolError) as caught:
        protocol.decode(orjson.dumps(message).decode())
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{}", CloseCode.UNSUPPORTED_DATA),
        ("", CloseCode.INVALID_DATA),
        ("nul", CloseCode.INVALID_DATA),
        ('"text"', CloseCode.INVALID_DATA),
        ("{}", CloseCode.POLICY_VIOLATION),
    ],
)
def test_undecodable_frames(protocol: Protocol, raw: str | bytes, code: CloseCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.decode(raw)
    assert caught.value.code == code


def test_negotiation_picks_the_highest_shared_version(protocol: Protocol) -> None:
    def hello(versions: list[int]) -> Hello:
        frame = orjson.dumps({**_examples("hello")[0], "versions": versions}).decode()
        message = protocol.decode(frame)
        assert isinstance(message, Hello)
        return message

    assert protocol.negotiate(hello([1, 7])) == 1
    with pytest.raises(ProtocolError) as caught:
        protocol.negotiate(hello([7]))
    assert caught.value.code == CloseCode.UNSUPPORTED_VERSION


def test_close_reasons_fit_a_control_frame() -> None:
    error = ProtocolError(CloseCode.POLICY_VIOLATION, "é" * 200)
    assert len(error.close_reason.encode()) <= 123


def test_only_agent_messages_are_accepted_from_agents(protocol: Protocol) -> None:
    assert set(AGENT_MESSAGE_TYPES) == {
        "hello",
        "heartbeat",
        "facts",
        "refused",
        "started",
        "output",
        "finished",
    }
    for kind in ("welcome", "ack", "execute", "cancel", "result_ack"):
        with pytest.raises(ProtocolError) as caught:
            protocol.decode(orjson.dumps(_examples(kind)[0]).decode())
        assert caught.value.code == CloseCode.POLICY_VIOLATION

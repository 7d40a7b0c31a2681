"""Order checks: the hand-written ExecutionOrder checks give jsonschema's verdicts; signatures."""

from __future__ import annotations

import base64
import copy
import itertools
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sm_agent.accepted import COMPACT_MIN_RECORDS, AcceptedIds
from sm_agent.orders import (
    BadMessage,
    Execute,
    Refusal,
    check_order,
    load_public_key,
    parse_cancel,
    parse_execute,
    parse_order,
    parse_result_ack,
)
from sm_agent.policy import Policy, plan, resolve_log_file, unit_name

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "openapi" / "agent-protocol.json"


@pytest.fixture(scope="module")
def schema_validator() -> jsonschema.Draft7Validator:
    """Draft 7 on ExecutionOrder, with the agent's two documented strictnesses: an integer
    is never a float (5.0) and a pattern matches the whole string (variants below hold no
    trailing newlines, where ``$`` differs)."""
    definitions = json.loads(SCHEMA_FILE.read_text())["definitions"]
    checker = jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    validator = jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=checker)
    return validator(  # type: ignore[no-any-return]
        {"definitions": definitions, "$ref": "#/definitions/ExecutionOrder"}
    )


BASES: list[dict[str, Any]] = [
    {"kind": "shell", "shell": {"script": "uname -a"}},
    {
        "kind": "shell",
        "shell": {"argv": ["ls", "-l"], "env": {"A_1": "x"}, "cwd": "/tmp", "user": "deploy"},
    },
    {"kind": "service", "service": {"action": "list"}},
    {"kind": "service", "service": {"action": "restart", "unit": "getty@tty1.service"}},
    {"kind": "logs", "logs": {"unit": "nginx", "lines": 100, "follow": True}},
    {"kind": "logs", "logs": {"path": "/var/log/syslog", "lines": 0}},
]

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    0.5,
    1.0,
    86400,
    86401,
    100000,
    100001,
    1e300,
    "",
    "x",
    "a b",
    "-",
    "x" * 65,
    "x" * 257,
    "A",
    "start",
    "list",
    "shell",
    "logs",
    [],
    ["x"],
    [1],
    {},
    {"a": 1},
    "éé",
]


def _order(base: dict[str, Any]) -> dict[str, Any]:
    order: dict[str, Any] = {
        "v": 1,
        "execution_id": "x_0b5f1d2c",
        "command_id": "c_0b5f",
        "node_id": "n_1",
        "issued_at": 1764345600.0,
        "expires_at": 1764349200,
        "timeout": 60,
    }
    order.update(copy.deepcopy(base))
    return order


def _variants() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for base in BASES:
        order = _order(base)
        found.append(order)
        part = base["kind"]
        # Every top-level and part field: removed, or replaced by each odd value.
        for key in order:
            without = {k: v for k, v in order.items() if k != key}
            found.append(without)
            found += [{**order, key: value} for value in ODD_VALUES]
        for key in (
            *order[part].keys(),
            "script",
            "argv",
            "unit",
            "path",
            "lines",
            "follow",
            "action",
            "env",
            "cwd",
            "user",
            "extra",
        ):
            changed = copy.deepcopy(order)
            changed[part].pop(key, None)
            found.append(copy.deepcopy(changed))
            for value in ODD_VALUES:
                changed[part][key] = value
                found.append(copy.deepcopy(changed))
        # Another kind's part beside, or instead of, its own.
        for other in ("shell", "service", "logs"):
            found.append({**order, other: {"action": "list"}})
            found.append({**order, "kind": other})
        found.append({**order, "extra": 1})
    # env names and values
    shell = _order(BASES[1])
    for name, value in itertools.product(["A", "_x", "1A", "a-b", "", "x" * 129], ["v", 1, None]):
        found.append({**shell, "shell": {**shell["shell"], "env": {name: value}}})
    found.append({**shell, "shell": {**shell["shell"], "env": {f"V{i}": "x" for i in range(257)}}})
    found.append({**shell, "shell": {**shell["shell"], "argv": ["x"] * 1025}})
    found.append({**shell, "shell": {**shell["shell"], "argv": []}})
    found.append({**shell, "shell": {**shell["shell"], "script": "x", "argv": ["x"]}})
    return found


def test_order_checks_agree_with_jsonschema(schema_validator: jsonschema.Draft7Validator) -> None:
    variants = _variants()
    assert len(variants) > 2000
    accepted = 0
    for order in variants:
        expected = schema_validator.is_valid(order)
        if isinstance(order.get("v"), float):
            expected = False  # v is the integer 1 (const 1 admits 1.0 in draft 7)
        code = None
        try:
            parse_order(order)
        except Refusal as refusal:
            code = refusal.code
        assert code in (None, "invalid", "unsupported_version")
        ours = code is None
        assert ours == expected, (order, list(schema_validator.iter_errors(order))[:1])
        accepted += ours
    assert accepted > 100


def test_stricter_than_draft_7_where_documented() -> None:
    order = _order(BASES[5])
    order["logs"]["lines"] = 5.0
    with pytest.raises(Refusal, match="lines"):
        parse_order(order)
    order = _order(BASES[0])
    order["command_id"] = "c_1\n"
    with pytest.raises(Refusal, match="command_id"):
        parse_order(order)


def test_versions_and_unreadable_orders() -> None:
    assert _refusal({**_order(BASES[0]), "v": 2}) == "unsupported_version"
    assert _refusal({**_order(BASES[0]), "v": "1"}) == "invalid"


def _refusal(order: dict[str, Any]) -> str:
    with pytest.raises(Refusal) as caught:
        parse_order(order)
    return caught.value.code


KEY = Ed25519PrivateKey.generate()
PUBLIC = (
    base64.urlsafe_b64encode(
        KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    .rstrip(b"=")
    .decode()
)


def signed(order: dict[str, Any] | str, key: Ed25519PrivateKey = KEY) -> Execute:
    text = order if isinstance(order, str) else json.dumps(order, sort_keys=True)
    signature = base64.urlsafe_b64encode(key.sign(text.encode())).rstrip(b"=").decode()
    return parse_execute(
        {
            "v": 1,
            "type": "execute",
            "execution_id": "x_0b5f1d2c",
            "order": text,
            "signature": signature,
        },
        1,
    )


def test_check_order_signature_address_and_expiry() -> None:
    key = load_public_key(PUBLIC)
    now = time.time()
    order = {**_order(BASES[0]), "expires_at": now + 60}
    assert check_order(signed(order), key, "n_1", now).kind == "shell"
    cases = [
        (signed(order, Ed25519PrivateKey.generate()), "n_1", now, "bad_signature"),
        (signed(order), "n_2", now, "misaddressed"),
        (signed(order), "n_1", now + 61, "expired"),
        (signed({**order, "execution_id": "x_other"}), "n_1", now, "invalid"),
        (signed("[1]"), "n_1", now, "invalid"),
        (signed('{"v": NaN}'), "n_1", now, "invalid"),
        (signed("not json"), "n_1", now, "invalid"),
    ]
    for execute, node, at, code in cases:
        with pytest.raises(Refusal) as caught:
            check_order(execute, key, node, at)
        assert caught.value.code == code, (execute, caught.value.reason)
    with pytest.raises(Refusal, match="no usable command key"):
        check_order(signed(order), load_public_key("garbage"), "n_1", now)


def test_gateway_messages_are_checked_strictly() -> None:
    good = {"v": 1, "type": "execute", "execution_id": "x_1", "order": "{}", "signature": "A" * 86}
    parse_execute(good, 1)
    for broken in (
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "signature"},
        {**good, "signature": "A" * 85},
        {**good, "execution_id": "x 1"},
        {**good, "order": "x"},
        {**good, "v": 2},
        {**good, "v": True},
    ):
        with pytest.raises(BadMessage):
            parse_execute(broken, 1)
    assert parse_cancel({"v": 1, "type": "cancel", "execution_id": "x_1"}, 1) == "x_1"
    with pytest.raises(BadMessage):
        parse_cancel({"v": 1, "type": "cancel", "execution_id": ""}, 1)
    ack = {"v": 1, "type": "result_ack", "execution_id": "x_1", "upto": 0}
    assert parse_result_ack(ack, 1) == ("x_1", 0)
    for upto in (-1, 1_000_001, True, 1.0, "1"):
        with pytest.raises(BadMessage):
            parse_result_ack({**ack, "upto": upto}, 1)


def test_policy(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    (root / "a.log").write_text("a\n")
    assert resolve_log_file(f"{root}/sub/../a.log", (str(root),)) == f"{root}/a.log"
    for path in (f"{root}/../x", "a.log", f"{root}2/a.log"):
        with pytest.raises(Refusal):
            resolve_log_file(path, (str(root),))
    assert unit_name("nginx") == "nginx.service"
    assert unit_name("sshd.socket") == "sshd.socket"
    order = parse_order(_order(BASES[1]))
    policy = Policy(allow_shell=True, allowed_users=("deploy",))
    assert plan(policy, order).argv == ("ls", "-l")
    assert plan(policy, order).user == "deploy"
    with pytest.raises(Refusal, match="allowed_users"):
        plan(Policy(allow_shell=True), order)
    with pytest.raises(Refusal, match="allow_shell"):
        plan(Policy(), order)


def test_accepted_ids_persist_and_expire(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "accepted"
    ids = AcceptedIds(path, clock=lambda: now[0])
    ids.add("x_1", 2000.0)
    ids.add("x_2", 1500.0)
    ids.mark_done("x_2")
    again = AcceptedIds(path, clock=lambda: now[0])
    assert "x_1" in again
    assert "x_2" in again
    assert again.unfinished() == ["x_1"]
    now[0] = 1500.0 + 3601
    later = AcceptedIds(path, clock=lambda: now[0])
    assert "x_2" not in later  # done and expired long ago: pruned
    assert "x_1" in later
    with path.open("a") as file:
        file.write("a x_3 99")  # a torn record: never flushed, never acted on
    assert "x_3" not in AcceptedIds(path, clock=lambda: now[0])


def test_accepted_ids_pruned_while_running(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "accepted"
    ids = AcceptedIds(path, clock=lambda: now[0])
    for i in range(2000):
        now[0] += 10.0
        ids.add(f"x_{i}", now[0] + 60.0)
        ids.mark_done(f"x_{i}")
    # Only ids within an hour (and a minute) of their expiry are remembered.
    assert len(ids) < 2 * COMPACT_MIN_RECORDS
    assert len(path.read_text().splitlines()) < 4 * COMPACT_MIN_RECORDS
    assert f"x_{1999}" in ids

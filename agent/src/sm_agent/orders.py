"""Execution orders: what the gateway forwards, checked before anything runs.

An ``execute`` message carries ``order``, the JSON text of an
``ExecutionOrder`` exactly as the core signed it, and ``signature``
(Ed25519, unpadded base64url) over its UTF-8 bytes. Checks, in this order,
each failure a :class:`Refusal` with the contract's code:

1. the signature verifies with the command public key the node received at
   enrollment (``bad_signature``);
2. the text is a JSON object whose ``v`` this agent reads
   (``unsupported_version``) and which is an ``ExecutionOrder`` as
   ``openapi/agent-protocol.json`` defines it, with the id of the message
   (``invalid``) — checked by hand here (the agent depends on no schema
   library); a test compares the verdicts with ``jsonschema``. Stricter than
   draft 7 in two documented ways: an integral float (``5.0``) is not an
   integer, and a string pattern must match the whole string (a trailing
   newline is refused);
3. it names this node (``misaddressed``) and has not expired (``expired``).

Whether the id was accepted before (``replayed``), whether the node enables
the kind (``disabled``) and the kind's own policy (``not_allowed``,
``unavailable``) are decided by :mod:`sm_agent.policy` and
:mod:`sm_agent.control`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


ORDER_VERSIONS = (1,)
KINDS = ("shell", "service", "logs")
ACTIONS = ("list", "status", "start", "stop", "restart", "enable", "disable")
RefusalCode = Literal[
    "bad_signature",
    "invalid",
    "unsupported_version",
    "misaddressed",
    "expired",
    "replayed",
    "disabled",
    "not_allowed",
    "busy",
    "unavailable",
]

EXECUTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SIGNATURE = re.compile(r"[A-Za-z0-9_-]{86}")
UNIT = re.compile(r"[A-Za-z0-9@._:\\-]{1,256}")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ORDER_CHARS = 98304
MAX_SAFE_INTEGER = 9007199254740991


class Refusal(Exception):
    """The agent will not run this order: a ``refused`` report's code and reason."""

    def __init__(self, code: RefusalCode, reason: str) -> None:
        super().__init__(reason)
        self.code: RefusalCode = code
        self.reason = reason[:1024]


class BadMessage(ValueError):
    """A gateway message that breaks the protocol schema (the connection is closed, 1008)."""


@dataclass(frozen=True)
class Execute:
    execution_id: str
    order: str
    signature: str


@dataclass(frozen=True)
class ShellSpec:
    script: str | None
    argv: tuple[str, ...] | None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    user: str | None = None


@dataclass(frozen=True)
class ServiceSpec:
    action: str
    unit: str | None


@dataclass(frozen=True)
class LogsSpec:
    unit: str | None
    path: str | None
    lines: int
    follow: bool


@dataclass(frozen=True)
class Order:
    execution_id: str
    command_id: str
    node_id: str
    kind: str
    issued_at: float
    expires_at: float
    timeout: float
    shell: ShellSpec | None = None
    service: ServiceSpec | None = None
    logs: LogsSpec | None = None


# ------------------------------------------------------------ the messages


def _exact_keys(message: dict[str, Any], required: set[str]) -> None:
    missing = required - message.keys()
    extra = message.keys() - required
    if missing or extra:
        problems = [f"missing {', '.join(sorted(missing))}"] if missing else []
        problems += [f"unknown {', '.join(sorted(extra))}"] if extra else []
        raise BadMessage(f"{message.get('type')} message: {'; '.join(problems)}")


def _execution_id(message: dict[str, Any]) -> str:
    value = message.get("execution_id")
    if not isinstance(value, str) or not EXECUTION_ID.fullmatch(value):
        raise BadMessage(f"{message.get('type')} message with a malformed execution_id")
    return value


def parse_execute(message: dict[str, Any], version: int) -> Execute:
    """An ``execute`` message checked against its schema (not the order inside)."""
    _exact_keys(message, {"v", "type", "execution_id", "order", "signature"})
    _version(message, version)
    order = message["order"]
    if not isinstance(order, str) or not 2 <= len(order) <= MAX_ORDER_CHARS:
        raise BadMessage("execute message: order must be a string of 2 to 98304 characters")
    signature = message["signature"]
    if not isinstance(signature, str) or not SIGNATURE.fullmatch(signature):
        raise BadMessage("execute message: signature must be 86 characters of base64url")
    return Execute(_execution_id(message), order, signature)


def parse_cancel(message: dict[str, Any], version: int) -> str:
    """The execution id of a ``cancel`` message."""
    _exact_keys(message, {"v", "type", "execution_id"})
    _version(message, version)
    return _execution_id(message)


def parse_result_ack(message: dict[str, Any], version: int) -> tuple[str, int]:
    """``(execution_id, upto)`` of a ``result_ack`` message."""
    _exact_keys(message, {"v", "type", "execution_id", "upto"})
    _version(message, version)
    upto = message["upto"]
    if isinstance(upto, bool) or not isinstance(upto, int) or not 0 <= upto <= 1_000_000:
        raise BadMessage("result_ack message: upto must be an integer from 0 to 1000000")
    return _execution_id(message), upto


def _version(message: dict[str, Any], version: int) -> None:
    value = message.get("v")
    if isinstance(value, bool) or value != version:
        raise BadMessage(f"{message.get('type')} message with v={value!r} (connection: {version})")


# ------------------------------------------------------------ the signature


class CommandKey:
    """The core's command public key (32 raw bytes).

    ``cryptography`` costs about 10 MB of memory once imported: it is loaded
    when the first order is checked, so a node that never gets one never pays.
    """

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._key: Ed25519PublicKey | None = None

    def verifies(self, signature: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if self._key is None:
            self._key = Ed25519PublicKey.from_public_bytes(self.raw)
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def load_public_key(text: str) -> CommandKey | None:
    """The command public key as stored at enrollment (unpadded base64url, 32 raw bytes)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{43}", text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=")
    except (ValueError, binascii.Error):
        return None
    return CommandKey(raw) if len(raw) == 32 else None


def verify_signature(key: CommandKey | None, execute: Execute) -> None:
    if key is None:
        raise Refusal("bad_signature", "this node holds no usable command key (enroll it again)")
    try:
        signature = base64.urlsafe_b64decode(execute.signature + "==")
        valid = key.verifies(signature, execute.order.encode())
    except (ValueError, binascii.Error):
        valid = False
    if not valid:
        raise Refusal(
            "bad_signature", "the order's signature does not verify with this node's command key"
        )


# ------------------------------------------------------------ the order


class _Invalid(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not a JSON number")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(float(value))  # type: ignore[arg-type]


def _string(where: str, value: object, minimum: int, maximum: int) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{where} must be a string")
    if not minimum <= len(value) <= maximum:
        raise _Invalid(f"{where} must be {minimum} to {maximum} characters")
    return value


def _matching(where: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{where} must be a string")
    if not pattern.fullmatch(value):
        raise _Invalid(f"{where} is malformed")
    return value


def _number(where: str, value: object, minimum: float, maximum: float | None = None) -> float:
    if not _is_number(value):
        raise _Invalid(f"{where} must be a number")
    number = float(value)  # type: ignore[arg-type]
    if number < minimum or (maximum is not None and number > maximum):
        raise _Invalid(f"{where} is out of range")
    return number


def _object(where: str, value: object, known: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{where} must be an object")
    unknown = value.keys() - known
    if unknown:
        raise _Invalid(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
    return value


def _one_of(where: str, spec: dict[str, Any], first: str, second: str) -> None:
    if (first in spec) == (second in spec):
        raise _Invalid(f"{where} needs exactly one of {first} and {second}")


def _shell(value: object) -> ShellSpec:
    spec = _object("shell", value, {"script", "argv", "env", "cwd", "user"})
    script = argv = None
    if "script" in spec:
        script = _string("shell.script", spec["script"], 1, 65536)
    if "argv" in spec:
        items = spec["argv"]
        if not isinstance(items, list) or not 1 <= len(items) <= 1024:
            raise _Invalid("shell.argv must be a list of 1 to 1024 strings")
        argv = tuple(_string("shell.argv item", item, 0, 65536) for item in items)
    _one_of("shell", spec, "script", "argv")
    env: dict[str, str] = {}
    if "env" in spec:
        raw = spec["env"]
        if not isinstance(raw, dict) or len(raw) > 256:
            raise _Invalid("shell.env must be an object of at most 256 variables")
        for name, text in raw.items():
            _matching("shell.env name", name, ENV_NAME)
            env[name] = _string(f"shell.env.{name}", text, 0, 32768)
    cwd = _string("shell.cwd", spec["cwd"], 1, 4096) if "cwd" in spec else None
    user = _matching("shell.user", spec["user"], USER) if "user" in spec else None
    return ShellSpec(script, argv, env, cwd, user)


def _service(value: object) -> ServiceSpec:
    spec = _object("service", value, {"action", "unit"})
    if "action" not in spec:
        raise _Invalid("service needs an action")
    action = spec["action"]
    if action not in ACTIONS:
        raise _Invalid(f"service.action must be one of {', '.join(ACTIONS)}")
    unit = _matching("service.unit", spec["unit"], UNIT) if "unit" in spec else None
    return ServiceSpec(str(action), unit)


def _logs(value: object) -> LogsSpec:
    spec = _object("logs", value, {"unit", "path", "lines", "follow"})
    if "lines" not in spec:
        raise _Invalid("logs needs lines")
    lines = spec["lines"]
    if not _is_int(lines) or not 0 <= lines <= 100_000:
        raise _Invalid("logs.lines must be an integer from 0 to 100000")
    unit = _matching("logs.unit", spec["unit"], UNIT) if "unit" in spec else None
    path = _string("logs.path", spec["path"], 1, 4096) if "path" in spec else None
    follow = spec.get("follow", False)
    if not isinstance(follow, bool):
        raise _Invalid("logs.follow must be true or false")
    _one_of("logs", spec, "unit", "path")
    return LogsSpec(unit, path, int(lines), follow)


REQUIRED = (
    "v",
    "execution_id",
    "command_id",
    "node_id",
    "kind",
    "issued_at",
    "expires_at",
    "timeout",
)


def _order(raw: dict[str, Any]) -> Order:
    _object("the order", raw, {*REQUIRED, *KINDS})
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise _Invalid(f"the order lacks {', '.join(missing)}")
    if raw["v"] != 1 or not _is_int(raw["v"]):
        raise _Invalid("the order's v must be 1")
    kind = raw["kind"]
    if kind not in KINDS:
        raise _Invalid(f"kind must be one of {', '.join(KINDS)}")
    present = [k for k in KINDS if k in raw]
    if present != [kind]:
        raise _Invalid(f"a {kind} order holds exactly its {kind} part (it holds: {present})")
    return Order(
        execution_id=_matching("execution_id", raw["execution_id"], EXECUTION_ID),
        command_id=_matching("command_id", raw["command_id"], EXECUTION_ID),
        node_id=_string("node_id", raw["node_id"], 1, 64),
        kind=str(kind),
        issued_at=_number("issued_at", raw["issued_at"], 0),
        expires_at=_number("expires_at", raw["expires_at"], 0),
        timeout=_number("timeout", raw["timeout"], 1, 86400),
        shell=_shell(raw["shell"]) if kind == "shell" else None,
        service=_service(raw["service"]) if kind == "service" else None,
        logs=_logs(raw["logs"]) if kind == "logs" else None,
    )


def decode_order(text: str) -> dict[str, Any]:
    """The order text as a JSON object; Refusal ``invalid`` otherwise."""
    try:
        raw = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, _Invalid) as exc:
        raise Refusal("invalid", f"the order is not JSON: {exc}") from None
    except RecursionError:
        raise Refusal("invalid", "the order is nested too deeply") from None
    if not isinstance(raw, dict):
        raise Refusal("invalid", "the order is not a JSON object")
    return raw


def parse_order(raw: dict[str, Any]) -> Order:
    """An ``ExecutionOrder`` checked against the schema; Refusal otherwise."""
    version = raw.get("v")
    if _is_int(version) and version not in ORDER_VERSIONS:
        raise Refusal(
            "unsupported_version",
            f"order version {version} is not one this agent reads "
            f"({', '.join(map(str, ORDER_VERSIONS))})",
        )
    try:
        return _order(raw)
    except _Invalid as exc:
        raise Refusal("invalid", f"the order is not a valid ExecutionOrder: {exc}") from None


def check_order(execute: Execute, key: CommandKey | None, node_id: str, now: float) -> Order:
    """Signature, shape, address and expiry of an execute message's order."""
    verify_signature(key, execute)
    order = parse_order(decode_order(execute.order))
    if order.execution_id != execute.execution_id:
        raise Refusal(
            "invalid",
            f"the order is for execution {order.execution_id}, "
            f"the message for {execute.execution_id}",
        )
    if order.node_id != node_id:
        raise Refusal("misaddressed", f"the order is for node {order.node_id}, this is {node_id}")
    if order.expires_at <= now:
        raise Refusal("expired", f"the order expired {now - order.expires_at:.0f} s ago")
    return order

"""The agent protocol's messages as msgspec Structs (contract: ``openapi/agent-protocol.json``).

Each Struct mirrors one object of the schema: the same fields, the same
required ones, unknown fields forbidden, every bound (minimum, maximum,
minLength, maxLength, minItems, maxItems, pattern, const, enum) a ``Meta``
constraint or a ``Literal``. Optional fields default to ``UNSET`` rather than ``None``,
so an explicit ``null`` is refused as the schema refuses it; the schema's
nullable rates are ``float | None`` and required. ``uniqueItems`` (hello's
versions) has no msgspec constraint: ``__post_init__`` checks it (msgspec
turns its ValueError into a ValidationError).

The messages are a union tagged by ``type``. ``v`` of hello is any version
(its shape never changes between versions); every other message carries the
version negotiated, which is 1, the only one spoken.

One deliberate deviation, strictly safer than the schema: where the schema
says ``integer`` (and for ``v``'s ``const 1``), JSON Schema draft 7 also
accepts a number with a zero fraction (``1.0``); these Structs refuse it.
Agents write integers as integers, and the consumers of the forwarded bytes
(the metrics and commands services) count on it. A second one: a schema
``pattern`` is an ECMA 262 regex, where ``$`` matches only at the end of the
string; in Python's ``re`` (which jsonschema uses) it also matches before a
final newline, so each pattern's final ``$`` becomes ``\\Z`` here
(:func:`pattern`): ``"x_1\\n"`` is no execution id.
``tests/test_protocol_structs.py`` proves the Structs equal to the schema,
these deviations included.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

JS_SAFE_MAX: Final = 9007199254740991  # 2**53 - 1
INT64_MAX: Final = 9223372036854775807

Count = Annotated[int, Meta(ge=0, le=INT64_MAX)]
SafeCount = Annotated[int, Meta(ge=0, le=JS_SAFE_MAX)]
NonNegative = Annotated[float, Meta(ge=0)]
Percent = Annotated[float, Meta(ge=0, le=100)]
# Bytes per second; null when there is nothing to compare with.
Rate = Annotated[float, Meta(ge=0)] | None
ShortName = Annotated[str, Meta(min_length=1, max_length=64)]
BootId = ShortName
Version = Annotated[int, Meta(ge=1)]


def pattern(ecma: str) -> str:
    """A schema's (ECMA 262) ``pattern`` for Python's ``re``: a final ``$`` ends the
    string (``\\Z``), as in ECMA 262, not before a final newline."""
    return ecma[:-1] + r"\Z" if ecma.endswith("$") and not ecma.endswith(r"\$") else ecma


ExecutionId = Annotated[str, Meta(pattern=pattern("^[A-Za-z0-9_-]{1,64}$"))]
ReportSeq = Annotated[int, Meta(ge=1, le=1_000_000)]


class Part(Struct, forbid_unknown_fields=True, gc=False):
    """An object inside a message."""


class Address(Part):
    interface: ShortName
    family: Literal["ipv4", "ipv6"]
    address: Annotated[str, Meta(min_length=2, max_length=64)]


class Facts(Part):
    hostname: Annotated[str, Meta(min_length=1, max_length=253)]
    os: Annotated[str, Meta(max_length=200)]
    kernel: Annotated[str, Meta(max_length=200)]
    arch: Annotated[str, Meta(max_length=64)]
    cpu_model: Annotated[str, Meta(max_length=200)]
    cpu_count: Annotated[int, Meta(ge=1, le=65536)]
    memory_total: Count
    addresses: Annotated[list[Address], Meta(max_length=256)]
    agent_version: ShortName
    boot_id: BootId


class Cpu(Part):
    percent: Percent
    per_core: Annotated[list[Percent], Meta(max_length=4096)]


class Memory(Part):
    total: Count
    used: Count
    available: Count


class Swap(Part):
    total: Count
    used: Count


class Disk(Part):
    mount: Annotated[str, Meta(min_length=1, max_length=256)]
    fstype: Annotated[str, Meta(max_length=32)]
    total: Count
    used: Count
    free: Count


class DiskIo(Part):
    read_bps: Rate
    write_bps: Rate
    read_bytes: Count
    write_bytes: Count


class Interface(Part):
    name: ShortName
    rx_bps: Rate
    tx_bps: Rate
    rx_bytes: Count
    tx_bytes: Count


class Net(Part):
    rx_bps: Rate
    tx_bps: Rate
    rx_bytes: Count
    tx_bytes: Count
    interfaces: Annotated[list[Interface], Meta(max_length=256)]


class Sample(Part, kw_only=True):  # kw_only is not inherited: optional fields stay in place
    cpu: Cpu
    memory: Memory
    swap: Swap
    load: Annotated[list[NonNegative], Meta(min_length=3, max_length=3)]
    disks: Annotated[list[Disk], Meta(max_length=64)]
    disk_io: DiskIo | UnsetType = UNSET
    net: Net
    processes: Annotated[int, Meta(ge=0, le=4194304)]
    tcp: Annotated[int, Meta(ge=0, le=100000000)] | UnsetType = UNSET
    uptime: NonNegative


class Message(Part, tag_field="type"):
    """The envelope: ``type`` is the tag, ``v`` the version."""


class Hello(Message, tag="hello"):
    v: Version
    versions: Annotated[list[Version], Meta(min_length=1, max_length=16)]
    agent_version: ShortName
    facts: Facts

    def __post_init__(self) -> None:
        if len(set(self.versions)) != len(self.versions):
            raise ValueError("hello: versions must be unique")


class Heartbeat(Message, tag="heartbeat"):
    v: Literal[1]
    boot_id: BootId
    seq: SafeCount
    sent_at: NonNegative
    sample: Sample
    dropped: SafeCount | UnsetType = UNSET


class FactsChanged(Message, tag="facts"):
    v: Literal[1]
    facts: Facts


class Welcome(Message, tag="welcome"):
    v: Literal[1]
    node_id: ShortName
    heartbeat_interval: Annotated[float, Meta(ge=1, le=3600)]
    backlog_rate: Annotated[float, Meta(ge=0.1, le=1000)]


class Ack(Message, tag="ack"):
    v: Literal[1]
    upto: Annotated[int, Meta(ge=1, le=JS_SAFE_MAX)]


class Execute(Message, tag="execute"):
    """Gateway → agent; the gateway forwards the core's frame as written (never encoded here)."""

    v: Literal[1]
    execution_id: ExecutionId
    order: Annotated[str, Meta(min_length=2, max_length=98304)]
    signature: Annotated[str, Meta(pattern=pattern("^[A-Za-z0-9_-]{86}$"))]


class Cancel(Message, tag="cancel"):
    v: Literal[1]
    execution_id: ExecutionId


class ResultAck(Message, tag="result_ack"):
    v: Literal[1]
    execution_id: ExecutionId
    upto: Annotated[int, Meta(ge=0, le=1_000_000)]


class Refused(Message, tag="refused"):
    v: Literal[1]
    execution_id: ExecutionId
    seq: Literal[0]
    at: NonNegative
    code: Literal[
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
    reason: Annotated[str, Meta(max_length=1024)]


class Started(Message, tag="started"):
    v: Literal[1]
    execution_id: ExecutionId
    seq: Literal[0]
    at: NonNegative
    pid: Annotated[int, Meta(ge=1, le=4194304)] | UnsetType = UNSET


Stream = Literal["stdout", "stderr"]


class Output(Message, tag="output"):
    v: Literal[1]
    execution_id: ExecutionId
    seq: ReportSeq
    at: NonNegative
    stream: Stream
    offset: SafeCount
    # Standard base64 of at most 16 KiB.
    data: Annotated[str, Meta(max_length=21848, pattern=pattern("^[A-Za-z0-9+/]*={0,2}$"))]


class StreamSummary(Part):
    bytes: SafeCount
    sha256: Annotated[str, Meta(pattern=pattern("^[0-9a-f]{64}$"))]
    truncated: bool


class Finished(Message, tag="finished", kw_only=True):
    v: Literal[1]
    execution_id: ExecutionId
    seq: ReportSeq
    at: NonNegative
    status: Literal["succeeded", "failed", "timed_out", "cancelled"]
    exit_code: Annotated[int, Meta(ge=-255, le=255)] | None
    signal: Annotated[int, Meta(ge=1, le=128)] | UnsetType = UNSET
    started_at: NonNegative
    ended_at: NonNegative
    stdout: StreamSummary
    stderr: StreamSummary
    error: Annotated[str, Meta(max_length=1024)] | UnsetType = UNSET


# An execution's reports: each goes to the results stream as received.
Report = Refused | Started | Output | Finished
REPORTS: Final = (Refused, Started, Output, Finished)
AgentMessage = Hello | Heartbeat | FactsChanged | Refused | Started | Output | Finished
GatewayMessage = Welcome | Ack | Execute | Cancel | ResultAck
# The message types by the schema's definition names.
AGENT_MESSAGES: Final[dict[str, type[Message]]] = {
    "hello": Hello,
    "heartbeat": Heartbeat,
    "facts": FactsChanged,
    "refused": Refused,
    "started": Started,
    "output": Output,
    "finished": Finished,
}
GATEWAY_MESSAGES: Final[dict[str, type[Message]]] = {
    "welcome": Welcome,
    "ack": Ack,
    "execute": Execute,
    "cancel": Cancel,
    "result_ack": ResultAck,
}

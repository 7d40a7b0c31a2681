"""The agent protocol's messages as msgspec Structs (contract: ``openapi/agent-protocol.json``).

Each Struct mirrors one object of the schema: the same fields, the same
required ones, unknown fields forbidden, every bound (minimum, maximum,
minLength, maxLength, minItems, maxItems, const, enum) a ``Meta`` constraint
or a ``Literal``. Optional fields default to ``UNSET`` rather than ``None``,
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
(the metrics service) count on it. ``tests/test_protocol_structs.py`` proves
the Structs equal to the schema, this deviation included.
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


AgentMessage = Hello | Heartbeat | FactsChanged
GatewayMessage = Welcome | Ack
# The message types by the schema's definition names.
AGENT_MESSAGES: Final[dict[str, type[Message]]] = {
    "hello": Hello,
    "heartbeat": Heartbeat,
    "facts": FactsChanged,
}
GATEWAY_MESSAGES: Final[dict[str, type[Message]]] = {"welcome": Welcome, "ack": Ack}

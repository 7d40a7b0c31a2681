"""Commands, their executions and output, and the audit log (openapi/commands.yaml).

The TypedDicts mirror the schemas of ``openapi/commands.yaml`` (optional
members are ``NotRequired``); :class:`CommandsApi` wraps every operation.
Output bytes travel as standard base64: :meth:`CommandsApi.output` returns
the page as the core sends it and :func:`decoded` turns its ``data`` into
bytes; :meth:`CommandsApi.output_bytes` reads every page of a stream.
"""

from __future__ import annotations

import base64
from typing import Final, Literal, NotRequired, TypedDict, cast

from sm_client.api.core import CoreApi

Kind = Literal["shell", "service", "logs"]
CommandStatus = Literal["running", "done", "cancelled"]
ExecutionState = Literal[
    "queued",
    "sent",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "expired",
    "refused",
]
Stream = Literal["stdout", "stderr"]
ServiceAction = Literal["list", "status", "start", "stop", "restart", "enable", "disable"]

KINDS: Final[tuple[Kind, ...]] = ("shell", "service", "logs")
STATES: Final[tuple[ExecutionState, ...]] = (
    "queued",
    "sent",
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "expired",
    "refused",
)
# Executions in these states will not change any more.
ENDED: Final[frozenset[str]] = frozenset(
    {"succeeded", "failed", "timed_out", "cancelled", "expired", "refused"}
)
SERVICE_ACTIONS: Final[tuple[ServiceAction, ...]] = (
    "list",
    "status",
    "start",
    "stop",
    "restart",
    "enable",
    "disable",
)
OUTPUT_PAGE: Final = 65536  # the core's default page of output bytes
OUTPUT_MAX_PAGE: Final = 1048576


class Target(TypedDict, total=False):
    """Which nodes; several members are OR'ed."""

    node_ids: list[str]
    groups: list[str]
    selector: str
    all: bool


class ShellSpec(TypedDict, total=False):
    """Exactly one of ``script`` and ``argv``."""

    script: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    user: str


class ServiceSpec(TypedDict):
    action: ServiceAction
    unit: NotRequired[str]


class LogsSpec(TypedDict, total=False):
    """Exactly one of ``unit`` and ``path``."""

    unit: str
    path: str
    lines: int
    follow: bool


class CommandCreate(TypedDict):
    target: Target
    kind: Kind
    shell: NotRequired[ShellSpec]
    service: NotRequired[ServiceSpec]
    logs: NotRequired[LogsSpec]
    timeout: NotRequired[int]
    expires_in: NotRequired[int]
    batch: NotRequired[str]
    note: NotRequired[str]


class StateCounts(TypedDict):
    queued: int
    sent: int
    running: int
    succeeded: int
    failed: int
    timed_out: int
    cancelled: int
    expired: int
    refused: int


class StreamSummary(TypedDict):
    bytes: int
    sha256: str
    truncated: bool


class Execution(TypedDict):
    id: str
    command_id: str
    node_id: str
    state: ExecutionState
    exit_code: int | None
    created_at: float
    attempts: int
    signal: NotRequired[int]
    code: NotRequired[str]
    reason: NotRequired[str]
    error: NotRequired[str]
    sent_at: NotRequired[float]
    started_at: NotRequired[float]
    ended_at: NotRequired[float]
    cancel_requested_at: NotRequired[float]
    stdout: NotRequired[StreamSummary]
    stderr: NotRequired[StreamSummary]


class CommandSummary(TypedDict):
    """A command without its executions (a row of the history)."""

    id: str
    actor: str
    kind: Kind
    target: Target
    node_count: int
    timeout: int
    expires_in: int
    expires_at: float
    batch: str | None
    note: str | None
    rerun_of: str | None
    created_at: float
    cancelled_at: float | None
    status: CommandStatus
    summary: StateCounts
    client: NotRequired[str]
    shell: NotRequired[ShellSpec]
    service: NotRequired[ServiceSpec]
    logs: NotRequired[LogsSpec]


class Command(CommandSummary):
    """A command with every execution (what create, get, cancel and rerun answer)."""

    executions: list[Execution]


# The brief's name for what ``get`` returns: the same schema.
CommandDetail = Command


class CommandPage(TypedDict):
    items: list[CommandSummary]
    next_cursor: str | None


class OutputPage(TypedDict):
    """The core's ``Output``: ``data`` is standard base64 of the raw bytes."""

    execution_id: str
    stream: Stream
    offset: int
    data: str
    next_offset: int
    complete: bool


class AuditRecord(TypedDict):
    seq: int
    at: float
    actor: str
    action: str
    target: str
    service: str
    detail: dict[str, object]
    prev_hash: str
    hash: str


class AuditPage(TypedDict):
    items: list[AuditRecord]
    next_cursor: str | None


class BadRecord(TypedDict):
    seq: int
    reason: str


class AuditVerdict(TypedDict):
    ok: bool
    records: int
    head: str | None
    first_bad: NotRequired[BadRecord]


def decoded(page: OutputPage) -> bytes:
    """The raw bytes of an output page."""
    return base64.b64decode(page["data"]) if page["data"] else b""


class CommandsApi:
    """``/api/v1/commands`` and ``/api/v1/audit`` of the core behind ``core``."""

    def __init__(self, core: CoreApi) -> None:
        self.core = core

    # --- commands ---------------------------------------------------------------------

    async def create(self, body: CommandCreate) -> Command:
        """Queue ``body`` on the nodes its target names (202: nothing has run yet)."""
        return cast(Command, await self.core.call("POST", "/api/v1/commands", json=body))

    async def list_commands(
        self,
        *,
        actor: str | None = None,
        kind: Kind | None = None,
        node_id: str | None = None,
        status: CommandStatus | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> CommandPage:
        """One page of commands, newest first; pass ``next_cursor`` back for the next."""
        params = {
            "actor": actor,
            "kind": kind,
            "node_id": node_id,
            "status": status,
            "since": since,
            "until": until,
            "limit": limit,
            "cursor": cursor,
        }
        return cast(CommandPage, await self.core.call("GET", "/api/v1/commands", params=params))

    async def get(self, command_id: str) -> CommandDetail:
        return cast(Command, await self.core.call("GET", f"/api/v1/commands/{command_id}"))

    async def cancel(self, command_id: str) -> Command:
        """Cancel every execution that has not ended (409 when all had)."""
        return cast(Command, await self.core.call("POST", f"/api/v1/commands/{command_id}/cancel"))

    async def cancel_execution(self, command_id: str, execution_id: str) -> Execution:
        """Cancel one execution (409 when it had ended)."""
        path = f"/api/v1/commands/{command_id}/executions/{execution_id}/cancel"
        return cast(Execution, await self.core.call("POST", path))

    async def rerun(
        self,
        command_id: str,
        node_ids: list[str] | None = None,
        *,
        failed_only: bool = False,
    ) -> Command:
        """Run ``command_id`` again as a new command.

        On all of its nodes by default, only those whose execution did not
        succeed with ``failed_only``, or on ``node_ids`` (a subset or other
        nodes: a new command with the same kind, specification, timeout and
        batch; environment values are not carried, as the core never shows them).
        """
        if node_ids is None:
            body = {"nodes": "failed" if failed_only else "all"}
            path = f"/api/v1/commands/{command_id}/rerun"
            return cast(Command, await self.core.call("POST", path, json=body))
        original = await self.get(command_id)
        again: CommandCreate = {
            "target": {"node_ids": list(node_ids)},
            "kind": original["kind"],
            "timeout": original["timeout"],
            "expires_in": original["expires_in"],
        }
        if original["batch"]:
            again["batch"] = original["batch"]
        if original["note"]:
            again["note"] = original["note"]
        if "shell" in original:
            shell = dict(original["shell"])
            shell.pop("env", None)
            again["shell"] = cast(ShellSpec, shell)
        if "service" in original:
            again["service"] = original["service"]
        if "logs" in original:
            again["logs"] = original["logs"]
        return await self.create(again)

    async def output(
        self,
        command_id: str,
        execution_id: str,
        *,
        stream: Stream = "stdout",
        offset: int = 0,
        limit: int = OUTPUT_PAGE,
    ) -> OutputPage:
        """Up to ``limit`` recorded bytes of ``stream`` from ``offset`` (see :func:`decoded`)."""
        path = f"/api/v1/commands/{command_id}/executions/{execution_id}/output"
        params = {"stream": stream, "offset": offset, "limit": limit}
        return cast(OutputPage, await self.core.call("GET", path, params=params))

    async def output_bytes(
        self, command_id: str, execution_id: str, stream: Stream = "stdout"
    ) -> bytes:
        """Every byte of ``stream`` recorded so far (all pages)."""
        chunks: list[bytes] = []
        offset = 0
        while True:
            page = await self.output(
                command_id, execution_id, stream=stream, offset=offset, limit=OUTPUT_MAX_PAGE
            )
            data = decoded(page)
            chunks.append(data)
            if page["complete"] or not data or page["next_offset"] <= offset:
                return b"".join(chunks)
            offset = page["next_offset"]

    # --- audit ------------------------------------------------------------------------

    async def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> AuditPage:
        """One page of audit records, newest first; pass ``next_cursor`` back for the next."""
        params = {
            "actor": actor,
            "action": action,
            "target": target,
            "since": since,
            "until": until,
            "limit": limit,
            "cursor": cursor,
        }
        return cast(AuditPage, await self.core.call("GET", "/api/v1/audit", params=params))

    async def verify_audit(self) -> AuditVerdict:
        """Have the core check the whole hash chain."""
        return cast(AuditVerdict, await self.core.call("GET", "/api/v1/audit/verify"))

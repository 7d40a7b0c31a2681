"""How a simulated agent answers executions, without forking anything.

An :class:`ExecutionResponder` is one swarm agent's :class:`~swarm.GatewayMessageHandler`.
On ``execute`` it answers as the real agent does for ``true``: ``started``
(seq 0) then ``finished`` (seq 1, ``succeeded``, exit code 0, both streams
empty: 0 bytes, the SHA-256 of nothing; no ``output`` report, since ``true``
writes nothing). It keeps each report until a cumulative ``result_ack``
covers it and sends the unacknowledged ones again right after the next
``welcome``, before any heartbeat, as the agent does (in memory here; the
agent spools them on disk). An id accepted before is answered with
``refused``/``replayed`` (informational, not kept for resending), like the
agent; ``cancel`` is counted and otherwise ignored (nothing runs long enough
to be cancelled).

With a verification key (``--verify``: off by default, the bench measures
the core and not the simulator's Ed25519) every order is checked as the
agent checks it: the Ed25519 signature over the order's UTF-8 bytes, the
order text in canonical form (``orjson`` with sorted keys), its version,
execution id, node id and expiry. A failed check is answered with
``refused`` and the code the agent would use, and counted, so a smoke run
shows whether the core signs and addresses orders correctly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.client import ClientConnection

from sm_shared.contracts import spec_path

PROTOCOL = 1
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
EMPTY_STREAM = {"bytes": 0, "sha256": EMPTY_SHA256, "truncated": False}
TERMINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled", "expired", "refused"})


def public_key(raw_b64url: str) -> Ed25519PublicKey:
    """The command public key as enrollment hands it out (raw, unpadded base64url)."""
    return Ed25519PublicKey.from_public_bytes(_b64url_decode(raw_b64url))


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class ExecutionStats:
    """What every agent of the swarm did with executions; counters only grow."""

    executes: int = 0  # execute messages received, redeliveries included
    accepted: int = 0
    redelivered: int = 0  # execute for an id accepted before (answered refused/replayed)
    refused: Counter[str] = field(default_factory=Counter)  # by code (verification failures)
    not_canonical: int = 0  # order text not orjson OPT_SORT_KEYS of itself (verify only)
    reports_sent: int = 0
    reports_resent: int = 0
    result_acks: int = 0
    finished_acked: int = 0  # executions whose last report was acknowledged
    cancels: int = 0
    other: Counter[str] = field(default_factory=Counter)  # message types not expected
    # Execution id → when its first execute arrived / its finished report was acknowledged.
    received_at: dict[str, float] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)
    verify_seconds: array[float] = field(default_factory=lambda: array("d"))

    def line(self) -> str:
        return (
            f"executes {self.executes} (redelivered {self.redelivered}), accepted {self.accepted}, "
            f"refused {dict(self.refused)}, reports sent {self.reports_sent} "
            f"(resent {self.reports_resent}), result_acks {self.result_acks}, "
            f"finished acknowledged {self.finished_acked}, cancels {self.cancels}"
            + (f", not canonical {self.not_canonical}" if self.not_canonical else "")
            + (f", unexpected {dict(self.other)}" if self.other else "")
        )


class Refusal(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def started(execution_id: str, now: float) -> dict[str, Any]:
    return {"v": PROTOCOL, "type": "started", "execution_id": execution_id, "seq": 0, "at": now}


def finished(execution_id: str, started_at: float, now: float) -> dict[str, Any]:
    return {
        "v": PROTOCOL,
        "type": "finished",
        "execution_id": execution_id,
        "seq": 1,
        "at": now,
        "status": "succeeded",
        "exit_code": 0,
        "started_at": started_at,
        "ended_at": now,
        "stdout": EMPTY_STREAM,
        "stderr": EMPTY_STREAM,
    }


def refused(execution_id: str, code: str, reason: str, now: float) -> dict[str, Any]:
    return {
        "v": PROTOCOL,
        "type": "refused",
        "execution_id": execution_id,
        "seq": 0,
        "at": now,
        "code": code,
        "reason": reason[:1024],
    }


class ExecutionResponder:
    """One simulated agent's executions: what it accepted and what is not acknowledged yet."""

    def __init__(
        self, node_id: str, stats: ExecutionStats, verify_key: Ed25519PublicKey | None
    ) -> None:
        self.node_id = node_id
        self.stats = stats
        self.verify_key = verify_key
        self.accepted: set[str] = set()
        # Execution id → [(seq, report JSON)] sent and not acknowledged yet, in seq order.
        self.unacked: dict[str, list[tuple[int, bytes]]] = {}

    async def on_connect(self, ws: ClientConnection) -> None:
        for reports in list(self.unacked.values()):
            for _seq, payload in reports:
                await ws.send(payload.decode())
                self.stats.reports_resent += 1

    async def handle(self, message: dict[str, Any], ws: ClientConnection) -> None:
        kind = message.get("type")
        if kind == "execute":
            await self._execute(message, ws)
        elif kind == "result_ack":
            self._result_ack(str(message["execution_id"]), int(message["upto"]))
        elif kind == "cancel":
            self.stats.cancels += 1
        else:
            self.stats.other[str(kind)] += 1

    async def _execute(self, message: dict[str, Any], ws: ClientConnection) -> None:
        now = time.time()
        stats = self.stats
        stats.executes += 1
        execution_id = str(message["execution_id"])
        if execution_id in self.accepted:
            stats.redelivered += 1
            reason = "this execution was accepted before"
            await ws.send(orjson.dumps(refused(execution_id, "replayed", reason, now)).decode())
            return
        if self.verify_key is not None:
            began = time.perf_counter()
            try:
                self._verify(message, now)
            except Refusal as exc:
                stats.refused[exc.code] += 1
                await self._report(
                    ws, execution_id, [refused(execution_id, exc.code, exc.reason, now)]
                )
                return
            finally:
                stats.verify_seconds.append(time.perf_counter() - began)
        self.accepted.add(execution_id)
        stats.accepted += 1
        stats.received_at.setdefault(execution_id, now)
        end = time.time()
        await self._report(
            ws, execution_id, [started(execution_id, now), finished(execution_id, now, end)]
        )

    async def _report(
        self, ws: ClientConnection, execution_id: str, reports: list[dict[str, Any]]
    ) -> None:
        kept = self.unacked.setdefault(execution_id, [])
        for report in reports:
            payload = orjson.dumps(report)
            kept.append((int(report["seq"]), payload))
            await ws.send(payload.decode())
            self.stats.reports_sent += 1

    def _result_ack(self, execution_id: str, upto: int) -> None:
        self.stats.result_acks += 1
        kept = self.unacked.get(execution_id)
        if kept is None:
            return
        kept[:] = [(seq, payload) for seq, payload in kept if seq > upto]
        if not kept:
            del self.unacked[execution_id]
            self.stats.finished_acked += 1
            self.stats.acked_at.setdefault(execution_id, time.time())

    def _verify(self, message: dict[str, Any], now: float) -> None:
        """The agent's checks, in its order; raises :class:`Refusal`."""
        assert self.verify_key is not None
        text = str(message["order"])
        try:
            signature = _b64url_decode(str(message["signature"]))
            self.verify_key.verify(signature, text.encode())
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise Refusal("bad_signature", "the signature does not verify") from exc
        try:
            order = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise Refusal("invalid", f"the order is not JSON: {exc}") from exc
        if not isinstance(order, dict):
            raise Refusal("invalid", "the order is not an object")
        if orjson.dumps(order, option=orjson.OPT_SORT_KEYS).decode() != text:
            self.stats.not_canonical += 1
        if order.get("v") != PROTOCOL:
            raise Refusal("unsupported_version", f"order version {order.get('v')!r}")
        if order.get("execution_id") != message["execution_id"]:
            raise Refusal("invalid", "the order's execution_id is not the message's")
        if order.get("node_id") != self.node_id:
            raise Refusal("misaddressed", f"for node {order.get('node_id')!r}")
        expires_at = order.get("expires_at")
        if not isinstance(expires_at, int | float) or expires_at <= now:
            raise Refusal("expired", f"expired at {expires_at!r}")
        if order.get("kind") != "shell" or "shell" not in order:
            raise Refusal("disabled", f"only shell is simulated, not {order.get('kind')!r}")


def check_reports_against_contract() -> None:
    """Validate the reports this module sends against ``openapi/agent-protocol.json``."""
    document = json.loads(spec_path("sm_shared", "agent-protocol.json").read_text())
    now = time.time()
    samples = {
        "started": started("x_check", now),
        "finished": finished("x_check", now, now),
        "refused": refused("x_check", "replayed", "accepted before", now),
    }
    for definition, instance in samples.items():
        schema = {"$ref": f"#/definitions/{definition}", "definitions": document["definitions"]}
        jsonschema.Draft7Validator(schema).validate(instance)

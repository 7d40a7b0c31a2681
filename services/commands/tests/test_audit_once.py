"""Every audit fact is chained exactly once, crashes between a commit and the audit append
included (real Redis, real SQLite): keyed events, the results consumer's re-emission
of reports read again, and the outbox of the API and of reconciliation."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy import Engine, func, select

from sm_commands import audit_chain, command_audit, outbox, records
from sm_commands.audit_schema import audit_records
from sm_commands.audit_writer import AuditWriter
from sm_commands.dispatch import Dispatcher
from sm_commands.reconcile import reconcile
from sm_commands.recording import Report, record
from sm_commands.results import ResultsConsumer, decode
from sm_commands.schema import audit_outbox, executions
from sm_commands.settings import CommandsSettings
from sm_shared.audit import AuditEvent, emit
from sm_shared.streams import AUDIT_STREAM, RESULTS_STREAM, route_key

EMPTY = {"bytes": 0, "sha256": hashlib.sha256(b"").hexdigest(), "truncated": False}


def store(engine: Engine, node_ids: list[str]) -> records.NewCommand:
    new = records.NewCommand(
        actor="alice",
        client="sm-tests",
        kind="shell",
        spec={"script": "true"},
        target={"node_ids": node_ids},
        node_ids=node_ids,
        timeout=60,
        expires_in=3600,
        batch=None,
        note=None,
        created_at=time.time(),
    )
    records.create(engine, new)
    return new


def execution_ids(engine: Engine, command_id: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(executions.c.node_id, executions.c.id).where(
                executions.c.command_id == command_id
            )
        )
        return {node: x for node, x in rows}


async def report(redis: Redis, node_id: str, message: dict[str, Any]) -> None:
    await redis.xadd(
        RESULTS_STREAM,
        {"n": node_id, "t": "report", "m": orjson.dumps(message), "r": repr(time.time())},
    )


def finished(execution_id: str, seq: int) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "finished",
        "execution_id": execution_id,
        "seq": seq,
        "at": 101.0,
        "status": "succeeded",
        "exit_code": 0,
        "started_at": 100.0,
        "ended_at": 101.0,
        "stdout": EMPTY,
        "stderr": EMPTY,
    }


def refused(execution_id: str) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "refused",
        "execution_id": execution_id,
        "seq": 0,
        "at": 100.0,
        "code": "disabled",
        "reason": "shell is not enabled",
    }


async def chain(redis: Redis, engine: Engine) -> list[dict[str, Any]]:
    """Run the audit writer over everything in the stream; the chain's records, oldest first."""
    writer = AuditWriter(redis, engine, "w1", block_ms=10)
    await writer.ensure_group()
    while await writer.step():
        pass
    page, _ = audit_chain.records(engine, audit_chain.Filters(), limit=500)
    assert audit_chain.verify(engine).ok
    return list(reversed(page))


def finishes(chained: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for r in chained:
        if r["action"] == "execution.finish":
            found.setdefault(r["target"].removeprefix("execution:"), []).append(r["detail"])
    return found


def event(key: str | None, n: int = 0) -> AuditEvent:
    return AuditEvent("alice", "node.update", "node:n", "registry", {"n": n}, key=key)


def test_the_key_travels_in_the_stream_fields_only_when_set() -> None:
    keyed = event("node.update:n:1")
    assert keyed.fields()["key"] == "node.update:n:1"
    assert AuditEvent.from_fields(keyed.fields()) == keyed
    plain = event(None)
    assert "key" not in plain.fields()
    assert AuditEvent.from_fields(plain.fields()).key is None


async def test_a_keyed_event_appended_twice_is_chained_once(aredis: Redis, engine: Engine) -> None:
    await emit(aredis, event("k:1", 1))
    await emit(aredis, event("k:1", 1))  # the same batch
    await emit(aredis, event(None, 2))
    await emit(aredis, event(None, 2))  # no key: two facts
    assert len(await chain(aredis, engine)) == 3
    await emit(aredis, event("k:1", 1))  # a later batch
    await emit(aredis, event("k:2", 3))
    chained = await chain(aredis, engine)
    assert [r["detail"]["n"] for r in chained] == [1, 2, 2, 3]
    with engine.connect() as conn:
        keys = conn.execute(select(audit_records.c.event_key).order_by(audit_records.c.seq))
        assert list(keys.scalars()) == ["k:1", None, None, "k:2"]


async def test_a_consumer_dead_between_commit_and_audit_append_loses_and_doubles_nothing(
    settings: CommandsSettings, engine: Engine, aredis: Redis, dispatcher: Dispatcher
) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    new = store(engine, [a, b, c])
    xs = execution_ids(engine, new.id)
    for node in (a, b, c):
        await aredis.set(route_key(node), "gw-1")
    await dispatcher.command(new.id)
    await report(aredis, a, finished(xs[a], 1))
    await report(aredis, b, refused(xs[b]))
    dead = ResultsConsumer(settings, engine, aredis, dispatcher)
    await dead.ensure_group()
    # The consumer reads the entries and records them, then dies before its audit append.
    entries = await dead._read(">", None)
    batch = [item for _, fields in entries if isinstance(item := decode(fields), Report)]
    assert record(engine, batch, time.time()).counts.recorded == 2
    assert await aredis.xlen(AUDIT_STREAM) == 0
    # c finishes while nobody consumes; a's finished and b's refusal come again (resent spools),
    # and b reports a (late) finished that changes nothing.
    await report(aredis, c, finished(xs[c], 1))
    await report(aredis, a, finished(xs[a], 1))
    await report(aredis, b, refused(xs[b]))
    await report(aredis, b, finished(xs[b], 1))
    restarted = ResultsConsumer(settings, engine, aredis, dispatcher)
    while await restarted.step():
        pass
    assert restarted.totals.recorded.duplicates == 4
    ended = finishes(await chain(aredis, engine))
    assert {x: len(details) for x, details in ended.items()} == {xs[a]: 1, xs[b]: 1, xs[c]: 1}
    assert ended[xs[a]][0]["status"] == "succeeded"
    assert ended[xs[a]][0]["stdout"] == {"bytes": 0, "sha256": EMPTY["sha256"]}
    assert ended[xs[b]][0]["status"] == "refused"
    assert ended[xs[b]][0]["code"] == "disabled"
    # Everything read again once more: still once each.
    await report(aredis, a, finished(xs[a], 1))
    while await restarted.step():
        pass
    assert {x: len(d) for x, d in finishes(await chain(aredis, engine)).items()} == {
        xs[a]: 1,
        xs[b]: 1,
        xs[c]: 1,
    }


def staged(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_outbox)).scalar_one())


async def test_staged_events_outlive_a_crash_and_are_chained_once(
    settings: CommandsSettings, engine: Engine, aredis: Redis, dispatcher: Dispatcher
) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    # An API process stores a command with its command.create staged, and dies before appending.
    new = records.NewCommand(
        actor="alice",
        client=None,
        kind="shell",
        spec={"script": "true", "env": {"TOKEN": "s3cret"}},
        target={"node_ids": [a, b]},
        node_ids=[a, b],
        timeout=60,
        expires_in=3600,
        batch=None,
        note=None,
        created_at=time.time(),
    )
    created = command_audit.command_created(new)
    records.create(engine, new, [created])
    assert staged(engine) == 1
    assert await aredis.xlen(AUDIT_STREAM) == 0
    # A reconciliation round expires both executions (staging their ends) and flushes it all.
    done = await reconcile(engine, dispatcher, settings, new.created_at + 3601)
    assert (done.expired, done.audited) == (2, 3)
    assert staged(engine) == 0
    # The API process's own append comes late: the writer keeps the first.
    await outbox.deliver(aredis, engine, [created])
    chained = await chain(aredis, engine)
    assert [r["action"] for r in chained] == ["command.create", *["execution.finish"] * 2]
    assert chained[0]["detail"]["shell"]["env"] == {"TOKEN": "***"}
    assert {d[0]["status"] for d in finishes(chained).values()} == {"expired"}
    # A round with nothing new stages and appends nothing.
    done = await reconcile(engine, dispatcher, settings, new.created_at + 3700)
    assert (done.expired, done.audited) == (0, 0)
    assert len(await chain(aredis, engine)) == 3


async def test_a_cancel_stages_its_events_with_its_change(engine: Engine, aredis: Redis) -> None:
    (a,) = (str(uuid.uuid4()),)
    new = store(engine, [a])
    request = command_audit.new_request_id()

    def audit(result: records.Cancellation) -> list[AuditEvent]:
        ids = [row._mapping["id"] for row in result.ended]
        return [command_audit.command_cancelled("bob", None, new.id, ids, 1.0, request)]

    result = records.cancel(engine, new.id, time.time(), audit=audit)
    assert [e.key for e in result.audit] == [f"command.cancel:{new.id}:{request}"]
    assert staged(engine) == 1
    assert await outbox.flush(aredis, engine) == 1
    await outbox.deliver(aredis, engine, result.audit)
    chained = await chain(aredis, engine)
    assert [(r["action"], r["actor"]) for r in chained] == [("command.cancel", "bob")]
    assert staged(engine) == 0

"""Dispatch, the results consumer and reconciliation against real Redis and SQLite.

Commands are stored the way the API stores them (``records.create``); gateways
are stood in for by their Redis keys and streams only: a ``route:{node}`` key
names the gateway, its inbox stream is read back, and reports are appended to
``results`` the way a gateway appends them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from redis.asyncio import Redis
from sqlalchemy import Engine, func, select

from sm_commands import records
from sm_commands.dispatch import INBOX_TTL, Dispatcher
from sm_commands.reconcile import reconcile
from sm_commands.results import COUNTERS_KEY, ResultsConsumer
from sm_commands.schema import executions, output_chunks, reports
from sm_commands.settings import CommandsSettings
from sm_shared.access_keys import b64url_decode
from sm_shared.command_keys import command_public_key
from sm_shared.datadir import DataDir
from sm_shared.streams import (
    AUDIT_STREAM,
    RESULTS_GROUP,
    RESULTS_STREAM,
    command_channel,
    gateway_inbox,
    route_key,
)

Validate = Callable[[dict[str, Any], str], None]
EMPTY = {"bytes": 0, "sha256": hashlib.sha256(b"").hexdigest(), "truncated": False}


def nodes(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def store(engine: Engine, node_ids: list[str], **options: Any) -> records.NewCommand:
    values: dict[str, Any] = {
        "actor": "alice",
        "client": "sm-tests",
        "kind": "shell",
        "spec": {"script": "echo hi", "env": {"TOKEN": "s3cret"}},
        "target": {"node_ids": node_ids},
        "node_ids": node_ids,
        "timeout": 60,
        "expires_in": 3600,
        "batch": None,
        "note": None,
        "created_at": time.time(),
        **options,
    }
    new = records.NewCommand(**values)
    records.create(engine, new)
    return new


async def route(redis: Redis, node_id: str, gateway: str = "gw-1") -> None:
    await redis.set(route_key(node_id), gateway)


async def inbox(redis: Redis, gateway: str = "gw-1") -> list[dict[str, Any]]:
    entries = await redis.xrange(gateway_inbox(gateway))
    return [
        {
            "kind": fields[b"kind"].decode(),
            "node_id": fields[b"node_id"].decode(),
            "frame": orjson.loads(fields[b"frame"]),
        }
        for _, fields in entries
    ]


def states(engine: Engine, command_id: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(executions.c.node_id, executions.c.state).where(
                executions.c.command_id == command_id
            )
        )
        return {node: state for node, state in rows}


def execution_of(engine: Engine, command_id: str, node_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(
            select(executions).where(
                executions.c.command_id == command_id, executions.c.node_id == node_id
            )
        ).one()
    return dict(row._mapping)


async def report(redis: Redis, node_id: str, message: dict[str, Any]) -> None:
    await redis.xadd(
        RESULTS_STREAM,
        {"n": node_id, "t": "report", "m": orjson.dumps(message), "r": repr(time.time())},
    )


async def online(redis: Redis, node_id: str) -> None:
    await redis.xadd(RESULTS_STREAM, {"n": node_id, "t": "online", "r": repr(time.time())})


def started(execution_id: str, at: float = 100.0) -> dict[str, Any]:
    return {"v": 1, "type": "started", "execution_id": execution_id, "seq": 0, "at": at}


def output(execution_id: str, seq: int, offset: int, data: bytes) -> dict[str, Any]:
    return {
        "v": 1,
        "type": "output",
        "execution_id": execution_id,
        "seq": seq,
        "at": 100.5,
        "stream": "stdout",
        "offset": offset,
        "data": base64.b64encode(data).decode(),
    }


def finished(execution_id: str, seq: int, exit_code: int = 0, out: bytes = b"") -> dict[str, Any]:
    return {
        "v": 1,
        "type": "finished",
        "execution_id": execution_id,
        "seq": seq,
        "at": 101.0,
        "status": "succeeded" if exit_code == 0 else "failed",
        "exit_code": exit_code,
        "started_at": 100.0,
        "ended_at": 101.0,
        "stdout": {
            "bytes": len(out),
            "sha256": hashlib.sha256(out).hexdigest(),
            "truncated": False,
        },
        "stderr": EMPTY,
    }


async def drain(consumer: ResultsConsumer) -> None:
    """Handle everything in the stream now (the consumer's own rounds, no blocking)."""
    await consumer.ensure_group()
    while await consumer.step():
        pass


@pytest.fixture
def consumer(
    settings: CommandsSettings, engine: Engine, aredis: Redis, dispatcher: Dispatcher
) -> ResultsConsumer:
    return ResultsConsumer(settings, engine, aredis, dispatcher)


async def test_dispatch_writes_signed_orders_to_the_holding_gateways(
    engine: Engine, aredis: Redis, dispatcher: Dispatcher, data_dir: DataDir, validate: Validate
) -> None:
    a, b, offline = nodes(3)
    new = store(engine, [a, b, offline])
    await route(aredis, a, "gw-1")
    await route(aredis, b, "gw-2")
    assert await dispatcher.command(new.id) == 2
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(command_public_key(data_dir)))
    delivered = {**{d["node_id"]: d for d in await inbox(aredis, "gw-1")}}
    delivered.update({d["node_id"]: d for d in await inbox(aredis, "gw-2")})
    assert set(delivered) == {a, b}
    for node_id, delivery in delivered.items():
        assert delivery["kind"] == "execute"
        frame = delivery["frame"]
        validate(frame, "execute")
        order = orjson.loads(frame["order"])
        validate(order, "ExecutionOrder")
        # The text is exactly the sorted-keys encoding, and the signature covers its bytes.
        assert frame["order"] == orjson.dumps(order, option=orjson.OPT_SORT_KEYS).decode()
        public.verify(b64url_decode(frame["signature"]), frame["order"].encode())
        assert order["node_id"] == node_id
        assert order["command_id"] == new.id
        assert order["execution_id"] == frame["execution_id"]
        assert order["shell"] == {"script": "echo hi", "env": {"TOKEN": "s3cret"}}
        assert order["expires_at"] == pytest.approx(new.created_at + 3600)
    assert states(engine, new.id) == {a: "sent", b: "sent", offline: "queued"}
    assert execution_of(engine, new.id, a)["attempts"] == 1
    # Dispatching again sends nothing twice.
    assert await dispatcher.command(new.id) == 0


@pytest.fixture
def validate(validate_message: Validate) -> Validate:
    return validate_message


async def test_a_forged_signature_would_not_verify(
    engine: Engine, aredis: Redis, dispatcher: Dispatcher, data_dir: DataDir
) -> None:
    """Control for the test above: the verification it relies on does reject a changed order."""
    (a,) = nodes(1)
    new = store(engine, [a])
    await route(aredis, a)
    await dispatcher.command(new.id)
    (delivery,) = await inbox(aredis)
    public = Ed25519PublicKey.from_public_bytes(b64url_decode(command_public_key(data_dir)))
    tampered = delivery["frame"]["order"].replace("echo hi", "rm -rf /")
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        public.verify(b64url_decode(delivery["frame"]["signature"]), tampered.encode())


async def test_reports_are_recorded_once_and_published(
    engine: Engine, aredis: Redis, dispatcher: Dispatcher, consumer: ResultsConsumer
) -> None:
    a, other = nodes(2)
    new = store(engine, [a])
    await route(aredis, a)
    await dispatcher.command(new.id)
    x = execution_of(engine, new.id, a)["id"]
    pubsub = aredis.pubsub()
    await pubsub.subscribe(command_channel(new.id))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    audit_before = await aredis.xlen(AUDIT_STREAM)
    messages = [started(x), output(x, 1, 0, b"hi\n"), finished(x, 2, out=b"hi\n")]
    for message in messages * 2:  # everything delivered twice
        await report(aredis, a, message)
    await report(aredis, other, started(x))  # from the wrong node
    await report(aredis, a, started("x_unknown"))
    replayed = {
        "v": 1,
        "type": "refused",
        "execution_id": x,
        "seq": 0,
        "at": 102.0,
        "code": "replayed",
        "reason": "accepted before",
    }
    await report(aredis, a, replayed)
    await drain(consumer)

    row = execution_of(engine, new.id, a)
    assert row["state"] == "succeeded"
    assert row["exit_code"] == 0
    assert row["stdout_sha256"] == hashlib.sha256(b"hi\n").hexdigest()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(reports)).scalar() == 3
        chunks = conn.execute(select(output_chunks.c.data)).scalars().all()
    assert chunks == [b"hi\n"]
    counters = await aredis.hgetall(COUNTERS_KEY)
    assert int(counters[b"duplicates"]) == 3
    assert int(counters[b"wrong_node"]) == 1
    assert int(counters[b"unknown"]) == 1
    assert int(counters[b"informational"]) == 1
    published = []
    while (message := await pubsub.get_message(timeout=0.5)) is not None:
        published.append(orjson.loads(message["data"]))
    await pubsub.aclose()
    assert [(e["type"], e.get("state")) for e in published] == [
        ("execution", "running"),
        ("output", None),
        ("execution", "succeeded"),
    ]
    assert base64.b64decode(published[1]["data"]) == b"hi\n"
    assert published[2]["exit_code"] == 0
    finishes = [
        orjson.loads(fields[b"detail"])
        for _, fields in await aredis.xrange(AUDIT_STREAM)
        if fields[b"action"] == b"execution.finish"
    ]
    assert len(finishes) == 1
    assert finishes[0]["status"] == "succeeded"
    assert finishes[0]["stdout"]["sha256"] == hashlib.sha256(b"hi\n").hexdigest()
    assert await aredis.xlen(AUDIT_STREAM) == audit_before + 1
    pending = await aredis.xpending(RESULTS_STREAM, RESULTS_GROUP)
    assert pending["pending"] == 0


async def test_a_batch_window_sends_the_next_when_one_ends(
    engine: Engine, aredis: Redis, dispatcher: Dispatcher, consumer: ResultsConsumer
) -> None:
    ids = nodes(5)
    new = store(engine, ids, batch="2")
    for node in ids:
        await route(aredis, node)
    assert await dispatcher.command(new.id) == 2
    sent = [n for n, s in states(engine, new.id).items() if s == "sent"]
    assert sent == ids[:2]
    first = execution_of(engine, new.id, ids[0])["id"]
    await report(aredis, ids[0], started(first))
    await drain(consumer)
    assert list(states(engine, new.id).values()).count("queued") == 3  # running still counts
    await report(aredis, ids[0], finished(first, 1, exit_code=3))
    await drain(consumer)
    now = states(engine, new.id)
    assert now[ids[0]] == "failed"
    assert now[ids[2]] == "sent"
    assert [now[n] for n in ids[3:]] == ["queued", "queued"]
    assert len(await inbox(aredis)) == 3


async def test_a_node_coming_online_gets_its_queued_executions(
    engine: Engine, aredis: Redis, dispatcher: Dispatcher, consumer: ResultsConsumer
) -> None:
    (a,) = nodes(1)
    new = store(engine, [a])
    assert await dispatcher.command(new.id) == 0
    assert states(engine, new.id) == {a: "queued"}
    await route(aredis, a, "gw-9")
    await online(aredis, a)
    await drain(consumer)
    assert states(engine, new.id) == {a: "sent"}
    assert [d["node_id"] for d in await inbox(aredis, "gw-9")] == [a]


async def test_reconciliation_redelivers_requeues_and_expires(
    settings: CommandsSettings, engine: Engine, aredis: Redis, dispatcher: Dispatcher
) -> None:
    a, b = nodes(2)
    new = store(engine, [a, b])
    await route(aredis, a, "gw-1")
    await route(aredis, b, "gw-1")
    await dispatcher.command(new.id)
    (first_a,) = [d for d in await inbox(aredis, "gw-1") if d["node_id"] == a]
    await aredis.delete(gateway_inbox("gw-1"))  # the gateway restarted and lost its inbox
    await aredis.set(route_key(a), "gw-2")  # a reconnected elsewhere
    await aredis.delete(route_key(b))  # b went offline
    later = time.time() + settings.commands_redeliver_after.total_seconds() + 1
    done = await reconcile(engine, dispatcher, settings, later)
    assert (done.redelivered, done.requeued) == (1, 1)
    (again,) = await inbox(aredis, "gw-2")
    assert again["frame"] == first_a["frame"]  # the same signed frame, byte for byte
    # An inbox does not outlive its gateway for good.
    assert 0 < await aredis.ttl(gateway_inbox("gw-2")) <= INBOX_TTL
    assert execution_of(engine, new.id, a)["attempts"] == 2
    assert states(engine, new.id) == {a: "sent", b: "queued"}

    expired_at = new.created_at + 3601
    done = await reconcile(engine, dispatcher, settings, expired_at)
    assert done.expired == 2
    assert states(engine, new.id) == {a: "expired", b: "expired"}
    assert records.get(engine, new.id)["status"] == "done"
    actions = [fields[b"action"] for _, fields in await aredis.xrange(AUDIT_STREAM)]
    assert actions.count(b"execution.finish") == 2


async def test_cancel_ends_queued_and_stops_sent_never_redelivering(
    settings: CommandsSettings, engine: Engine, aredis: Redis, dispatcher: Dispatcher
) -> None:
    a, b = nodes(2)
    new = store(engine, [a, b])
    await route(aredis, a)
    await dispatcher.command(new.id)
    result = records.cancel(engine, new.id, time.time())
    assert [r.node_id for r in result.ended] == [b]
    assert [r.node_id for r in result.to_stop] == [a]
    assert states(engine, new.id) == {a: "sent", b: "cancelled"}
    later = time.time() + settings.commands_redeliver_after.total_seconds() + 1
    done = await reconcile(engine, dispatcher, settings, later)
    assert done.redelivered == 0
    assert done.cancels == 1
    kinds = [d["kind"] for d in await inbox(aredis)]
    assert kinds == ["execute", "cancel"]


async def test_a_cancelled_execution_the_node_never_started_ends_and_a_late_start_is_stopped(
    settings: CommandsSettings,
    engine: Engine,
    aredis: Redis,
    dispatcher: Dispatcher,
    consumer: ResultsConsumer,
) -> None:
    (a,) = nodes(1)
    new = store(engine, [a])
    await route(aredis, a)
    await dispatcher.command(new.id)
    records.cancel(engine, new.id, time.time())
    period = settings.commands_redeliver_after.total_seconds()
    done = await reconcile(engine, dispatcher, settings, time.time() + period + 1)
    assert (done.cancels, done.abandoned) == (1, 0)
    assert states(engine, new.id) == {a: "sent"}
    done = await reconcile(engine, dispatcher, settings, time.time() + 2 * period + 1)
    assert done.abandoned == 1
    assert states(engine, new.id) == {a: "cancelled"}
    assert records.get(engine, new.id)["status"] != "running"
    # The order reached the node after all: its start is answered with a cancel,
    # and what it reports in the end is what the record keeps.
    execution_id = execution_of(engine, new.id, a)["id"]
    await aredis.delete(gateway_inbox("gw-1"))
    await report(aredis, a, started(execution_id))
    await drain(consumer)
    assert [d["kind"] for d in await inbox(aredis)] == ["cancel"]
    stopped = {**finished(execution_id, 1, exit_code=0), "status": "cancelled", "exit_code": None}
    await report(aredis, a, stopped)
    await drain(consumer)
    row = execution_of(engine, new.id, a)
    assert row["state"] == "cancelled"
    assert row["started_at"] is not None


async def test_a_restarted_consumer_handles_what_it_had_read(
    settings: CommandsSettings, engine: Engine, aredis: Redis, dispatcher: Dispatcher
) -> None:
    (a,) = nodes(1)
    new = store(engine, [a])
    await route(aredis, a)
    await dispatcher.command(new.id)
    x = execution_of(engine, new.id, a)["id"]
    first = ResultsConsumer(settings, engine, aredis, dispatcher)
    await first.ensure_group()
    await report(aredis, a, started(x))
    await report(aredis, a, finished(x, 1))
    # The first process reads the entries and dies before recording them.
    read = await first._read(">", None)
    assert len(read) == 2
    assert states(engine, new.id) == {a: "sent"}
    restarted = ResultsConsumer(settings, engine, aredis, dispatcher)
    await restarted.step()
    assert states(engine, new.id) == {a: "succeeded"}
    assert (await aredis.xpending(RESULTS_STREAM, RESULTS_GROUP))["pending"] == 0


async def test_a_dead_consumers_entries_are_claimed(
    settings: CommandsSettings, engine: Engine, aredis: Redis, dispatcher: Dispatcher
) -> None:
    (a,) = nodes(1)
    new = store(engine, [a])
    await route(aredis, a)
    await dispatcher.command(new.id)
    x = execution_of(engine, new.id, a)["id"]
    dead = ResultsConsumer(
        settings.model_copy(update={"commands_consumer": "dead"}), engine, aredis, dispatcher
    )
    await dead.ensure_group()
    await report(aredis, a, started(x))
    assert len(await dead._read(">", None)) == 1
    quick = settings.model_copy(update={"commands_claim_idle": timedelta(0)})
    survivor = ResultsConsumer(quick, engine, aredis, dispatcher)
    await asyncio.sleep(0.01)
    assert await survivor.claim() == 1
    assert states(engine, new.id) == {a: "running"}


async def test_output_pages_follow_the_recorded_chunks(
    engine: Engine, aredis: Redis, dispatcher: Dispatcher, consumer: ResultsConsumer
) -> None:
    (a,) = nodes(1)
    new = store(engine, [a])
    await route(aredis, a)
    await dispatcher.command(new.id)
    x = execution_of(engine, new.id, a)["id"]
    raw = bytes(range(256)) * 4  # not UTF-8
    await report(aredis, a, output(x, 2, 512, raw[512:]))  # the second chunk first
    await report(aredis, a, output(x, 1, 0, raw[:512]))
    await drain(consumer)
    page = records.output(engine, new.id, x, "stdout", 0, 700)
    assert base64.b64decode(page["data"]) == raw[:700]
    assert page["next_offset"] == 700
    assert not page["complete"]
    rest = records.output(engine, new.id, x, "stdout", 700, 65536)
    assert base64.b64decode(rest["data"]) == raw[700:]
    await report(aredis, a, finished(x, 3, out=raw))
    await drain(consumer)
    assert records.output(engine, new.id, x, "stdout", len(raw), 10)["complete"]


async def test_the_consumer_process_records_reports_and_chains_audit_events(
    settings: CommandsSettings, engine: Engine, aredis: Redis, dispatcher: Dispatcher
) -> None:
    from sm_commands.audit_chain import verify
    from sm_commands.consumer import serve
    from sm_shared.streams import COMMANDS_CONSUMER_HEALTH_KEY

    (a,) = nodes(1)
    new = store(engine, [a])
    await route(aredis, a)
    await dispatcher.command(new.id)
    x = execution_of(engine, new.id, a)["id"]
    await report(aredis, a, started(x))
    await report(aredis, a, finished(x, 1))
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop))
    for _ in range(200):
        if states(engine, new.id) == {a: "succeeded"} and verify(engine).records == 1:
            break
        await asyncio.sleep(0.05)
    assert await aredis.exists(COMMANDS_CONSUMER_HEALTH_KEY)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert states(engine, new.id) == {a: "succeeded"}
    verdict = verify(engine)
    assert verdict.ok
    assert verdict.records == 1  # the execution.finish event, chained by the audit writer
    assert not await aredis.exists(COMMANDS_CONSUMER_HEALTH_KEY)

"""The ingest consumer against real Redis and a real SQLite file."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

import orjson
import pytest
from redis import Redis
from sqlalchemy import Engine, func, select, text

from sm_metrics.counters import COUNTERS_KEY
from sm_metrics.ingest import Consumer
from sm_metrics.schema import latest, samples, touched
from sm_metrics.settings import MetricsSettings
from sm_shared.streams import METRICS_GROUP, METRICS_INGEST_HEALTH_KEY, METRICS_STREAM

NODE_A = "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10"
NODE_B = "1c7f5b9f-4d2e-4b68-8e4f-3a2b8d0c6f21"
Make = Callable[..., dict[str, Any]]
Append = Callable[..., list[bytes]]


class Rig(NamedTuple):
    """What every test here uses: settings, the database, Redis, heartbeats, the stream."""

    settings: MetricsSettings
    engine: Engine
    redis: Redis
    make_heartbeat: Make
    append: Append


@pytest.fixture
def rig(
    settings: MetricsSettings,
    engine: Engine,
    redis_client: Redis,
    make_heartbeat: Make,
    append: Append,
) -> Rig:
    return Rig(settings, engine, redis_client, make_heartbeat, append)


def count(engine: Engine, table: Any = samples) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def pending(client: Redis) -> int:
    summary: Any = client.xpending(METRICS_STREAM, METRICS_GROUP)
    return int(summary["pending"])


def counters(client: Redis) -> dict[str, int]:
    raw: Any = client.hgetall(COUNTERS_KEY)
    return {k.decode(): int(v) for k, v in raw.items()}


def consumer(settings: MetricsSettings, engine: Engine, client: Redis, **changes: Any) -> Consumer:
    made = Consumer(settings.model_copy(update=changes), engine, client)
    made.ensure_group()
    return made


def run_until_idle(c: Consumer) -> None:
    c.recover()
    while c.step():
        pass


def test_a_batch_becomes_rows_latest_and_touched_minutes(rig: Rig) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    c = consumer(settings, engine, redis_client)
    append(
        NODE_A,
        [make_heartbeat(seq=i, sent_at=now - 100 + i * 5, cpu=10.0 + i) for i in range(10)],
        now,
    )
    append(NODE_B, [make_heartbeat(seq=0, sent_at=now - 1, example=1)], now)
    assert c.step() == 11
    assert count(engine) == 11
    with engine.connect() as conn:
        row = conn.execute(
            select(samples).where(samples.c.node_id == NODE_A, samples.c.seq == 3)
        ).one()
        newest = conn.execute(select(latest).where(latest.c.node_id == NODE_A)).one()
        sparse = conn.execute(select(latest).where(latest.c.node_id == NODE_B)).one()
        minutes = conn.execute(select(func.count()).select_from(touched)).scalar_one()
    assert row.cpu == 13.0
    assert row.ts == pytest.approx(now - 85)
    assert row.received_at == pytest.approx(now)
    assert row.mem_total == 4110147584
    assert row.mem_percent == pytest.approx(1203765248 * 100 / 4110147584, abs=1e-3)
    assert row.disk_total == 41996005376
    assert (row.net_rx_bps, row.disk_write_bps, row.tcp, row.load5) == (1536.0, 40960.0, 23, 0.31)
    assert orjson.loads(row.detail)["disks"] == [
        ["/", "ext4", 41996005376, 9338826752, 30492528640]
    ]
    assert (newest.seq, newest.cpu, newest.dropped) == (9, 19.0, 0)
    # The sparse example: no disks, no disk counters, no tcp, null rates; a dropped count.
    assert (sparse.disk_total, sparse.disk_read_bps, sparse.tcp, sparse.net_rx_bps) == (
        None,
        None,
        None,
        None,
    )
    assert sparse.dropped == 3
    assert minutes == len({int(now - 100 + i * 5) // 60 for i in range(10)}) + 1
    assert pending(redis_client) == 0
    assert counters(redis_client) == {"entries": 11, "stored": 11}


def test_duplicates_are_ignored_and_counted(rig: Rig) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    c = consumer(settings, engine, redis_client)
    beats = [make_heartbeat(seq=i, sent_at=now - 50 + i) for i in range(5)]
    append(NODE_A, beats, now)
    append(NODE_A, beats[2:], now + 1)  # re-sent after a reconnect
    run_until_idle(c)
    assert count(engine) == 5
    assert counters(redis_client) == {"entries": 8, "stored": 5, "duplicates": 3}
    # The same sequence after a reboot (another boot id) is another heartbeat.
    append(NODE_A, [make_heartbeat(seq=0, sent_at=now, boot_id="another-boot")], now)
    run_until_idle(c)
    assert count(engine) == 6


def test_an_older_heartbeat_never_replaces_the_latest(rig: Rig) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    c = consumer(settings, engine, redis_client)
    append(NODE_A, [make_heartbeat(seq=100, sent_at=now, cpu=50.0)], now)
    run_until_idle(c)
    # Buffered heartbeats from before arrive later (original timestamps).
    append(
        NODE_A, [make_heartbeat(seq=i, sent_at=now - 600 + i, cpu=1.0) for i in range(5)], now + 1
    )
    run_until_idle(c)
    with engine.connect() as conn:
        row = conn.execute(select(latest)).one()
    assert (row.seq, row.cpu) == (100, 50.0)
    assert count(engine) == 6


def test_acknowledged_only_after_commit(rig: Rig) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    c = consumer(settings, engine, redis_client)
    append(NODE_A, [make_heartbeat(seq=i, sent_at=now - 10 + i) for i in range(4)], now)
    c.recover()
    # The write fails (its table is gone): nothing may be acknowledged.
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE samples RENAME TO samples_away"))
    with pytest.raises(Exception, match="no such table"):
        c.step()
    assert pending(redis_client) == 4
    assert counters(redis_client) == {}
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE samples_away RENAME TO samples"))
    # Retried from the consumer's own pending entries: stored once, then acknowledged.
    c.recovering = True
    run_until_idle(c)
    assert count(engine) == 4
    assert pending(redis_client) == 0


def test_a_malformed_entry_is_acknowledged_counted_and_skipped(
    rig: Rig,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    c = consumer(settings, engine, redis_client)
    good = make_heartbeat(seq=1, sent_at=now)
    wrong_type = make_heartbeat(seq=2, sent_at=now)
    wrong_type["sample"]["cpu"]["percent"] = "12"
    no_sample = {k: v for k, v in good.items() if k != "sample"} | {"seq": 3}
    redis_client.xadd(METRICS_STREAM, {"n": NODE_A, "h": b"{not json", "r": str(now)})
    redis_client.xadd(METRICS_STREAM, {"n": NODE_A, "r": str(now)})  # no heartbeat field
    redis_client.xadd(METRICS_STREAM, {"n": NODE_A, "h": orjson.dumps(good), "r": "soon"})
    append(NODE_A, [wrong_type, no_sample, good], now)
    with caplog.at_level("WARNING", logger="sm_metrics.ingest"):
        run_until_idle(c)
    assert count(engine) == 1
    assert pending(redis_client) == 0
    assert counters(redis_client) == {"entries": 6, "stored": 1, "malformed": 5}
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 5


def test_too_old_is_dropped_and_counted_and_skew_is_flagged(rig: Rig) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    c = consumer(settings, engine, redis_client, metrics_retention_raw=timedelta(hours=1))
    append(
        NODE_A,
        [
            make_heartbeat(seq=1, sent_at=now - 7200),  # beyond the raw retention
            make_heartbeat(seq=2, sent_at=now - 1800),  # buffered, late but kept, not skewed
            make_heartbeat(seq=3, sent_at=now + 600),  # the agent's clock runs ahead
            make_heartbeat(seq=4, sent_at=now + 30),  # within the threshold
        ],
        now,
    )
    run_until_idle(c)
    with engine.connect() as conn:
        flags = dict(conn.execute(select(samples.c.seq, samples.c.skewed)).all())
    assert flags == {2: False, 3: True, 4: False}
    assert counters(redis_client) == {"entries": 4, "stored": 3, "too_old": 1, "skewed": 1}


def test_a_restarted_consumer_first_stores_what_it_had_read(rig: Rig) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    append(NODE_A, [make_heartbeat(seq=i, sent_at=now - 30 + i) for i in range(7)], now)
    # A consumer of the same name read them and died before storing them.
    redis_client.xgroup_create(METRICS_STREAM, METRICS_GROUP, id="0")
    redis_client.xreadgroup(METRICS_GROUP, settings.metrics_consumer, {METRICS_STREAM: ">"})
    assert pending(redis_client) == 7
    c = consumer(settings, engine, redis_client)
    assert c.recover() == 7
    assert count(engine) == 7
    assert pending(redis_client) == 0


def test_entries_of_a_dead_consumer_are_claimed_after_the_idle_time(rig: Rig) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    append(NODE_A, [make_heartbeat(seq=i, sent_at=now - 30 + i) for i in range(3)], now)
    redis_client.xgroup_create(METRICS_STREAM, METRICS_GROUP, id="0")
    redis_client.xreadgroup(METRICS_GROUP, "dead-pod", {METRICS_STREAM: ">"})
    c = consumer(settings, engine, redis_client, metrics_claim_idle=timedelta(milliseconds=200))
    assert c.claim() == 0  # not idle long enough yet
    time.sleep(0.3)
    assert c.claim() == 3
    assert count(engine) == 3
    assert pending(redis_client) == 0


def test_the_stream_is_trimmed_below_the_oldest_pending_entry(rig: Rig) -> None:
    settings, engine, redis_client, make_heartbeat, append = rig
    now = time.time()
    beats = [make_heartbeat(seq=i, sent_at=now - 60 + i) for i in range(10)]
    c = consumer(settings, engine, redis_client)
    ids = append(NODE_A, beats[:3], now)
    run_until_idle(c)
    # A consumer that dies holds entries 3 and 4 unacknowledged.
    ids += append(NODE_A, beats[3:5], now)
    redis_client.xreadgroup(METRICS_GROUP, "dead-pod", {METRICS_STREAM: ">"})
    ids += append(NODE_A, beats[5:], now)
    run_until_idle(c)  # everything else is stored and acknowledged
    c._next_trim = 0.0
    c.housekeeping()
    remaining = [entry_id for entry_id, _ in redis_client.xrange(METRICS_STREAM)]
    assert remaining == ids[3:]  # the oldest pending entry and everything after it
    assert pending(redis_client) == 2
    # Entries nobody has read are never trimmed, even with nothing pending.
    redis_client.xack(METRICS_STREAM, METRICS_GROUP, ids[3], ids[4])
    later = append(NODE_A, [make_heartbeat(seq=20, sent_at=now)], now)
    c._next_trim = 0.0
    c._next_claim = float("inf")
    c.housekeeping()
    remaining = [entry_id for entry_id, _ in redis_client.xrange(METRICS_STREAM)]
    assert later[0] in remaining
    assert ids[3] not in remaining
    assert redis_client.exists(METRICS_INGEST_HEALTH_KEY)

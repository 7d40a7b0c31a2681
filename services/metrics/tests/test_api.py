"""The metrics API (response validation on): latest, series (tier choice, explicit
missing buckets), summary, the ingest's figures in /readyz and /metrics, scopes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import orjson
import pytest
from redis import Redis
from sqlalchemy import Engine
from starlette.testclient import TestClient

from sm_metrics import create_app, rollups
from sm_metrics.counters import COUNTERS_KEY
from sm_metrics.settings import MetricsSettings
from sm_shared.datadir import DataDir
from sm_shared.scopes import METRICS_READ, NODES_READ
from sm_shared.streams import METRICS_INGEST_HEALTH_KEY, METRICS_STREAM, presence_key
from sm_shared.tokens import issue_access_token

NODE_A = "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10"
NODE_B = "1c7f5b9f-4d2e-4b68-8e4f-3a2b8d0c6f21"
NODE_C = "2d806ca0-5e3f-4c79-9f50-4b3c9e1d7032"
Make = Callable[..., dict[str, Any]]
Store = Callable[..., None]


def bearer(data: DataDir, *scopes: str) -> dict[str, str]:
    token = issue_access_token(data, subject="tester", client_id="tests", scopes=scopes, ttl=300)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(settings: MetricsSettings, engine: Engine) -> Iterator[TestClient]:
    with create_app(settings).test_client() as test_client:
        yield test_client


@pytest.fixture
def reader(data_dir: DataDir) -> dict[str, str]:
    return bearer(data_dir, METRICS_READ)


class Api(NamedTuple):
    """The app's client, a metrics:read header, heartbeats and a way to store them."""

    client: TestClient
    reader: dict[str, str]
    make_heartbeat: Make
    store: Store


@pytest.fixture
def api(client: TestClient, reader: dict[str, str], make_heartbeat: Make, store: Store) -> Api:
    return Api(client, reader, make_heartbeat, store)


def test_latest_lists_every_node_paged_or_by_id(api: Api) -> None:
    client, reader, make_heartbeat, store = api
    now = time.time()
    store(
        NODE_A,
        [make_heartbeat(seq=i, sent_at=now - 10 + i, cpu=float(i)) for i in range(5)],
        now,
    )
    store(NODE_B, [make_heartbeat(seq=0, sent_at=now, example=1)], now)
    store(NODE_C, [make_heartbeat(seq=0, sent_at=now, cpu=70.0)], now)
    page = client.get("/api/v1/metrics/latest", params={"limit": 2}, headers=reader)
    assert page.status_code == 200, page.text
    body = page.json()
    assert [i["node_id"] for i in body["items"]] == [NODE_A, NODE_B]
    assert body["next_after"] == NODE_B
    first = body["items"][0]
    assert (first["seq"], first["values"]["cpu"], first["skewed"]) == (4, 4.0, False)
    assert first["detail"]["disks"][0]["mount"] == "/"
    assert first["detail"]["interfaces"][0]["name"] == "eth0"
    assert body["items"][1]["values"]["tcp"] is None
    assert body["items"][1]["detail"]["disk_io"] is None
    rest = client.get("/api/v1/metrics/latest", params={"after": NODE_B}, headers=reader).json()
    assert [i["node_id"] for i in rest["items"]] == [NODE_C]
    assert rest["next_after"] is None
    chosen = client.get(
        "/api/v1/metrics/latest", params=[("node_id", NODE_C), ("node_id", NODE_A)], headers=reader
    ).json()
    assert [i["node_id"] for i in chosen["items"]] == [NODE_A, NODE_C]


def test_series_from_raw_with_missing_buckets_explicit(api: Api) -> None:
    client, reader, make_heartbeat, store = api
    now = time.time()
    start = (int(now) // 60 - 10) * 60
    # Samples every 5 s in minutes 0-1 and 4 of the range; minutes 2-3 have none (the node was off).
    beats = [
        make_heartbeat(seq=i, sent_at=start + 5 * i + 1, cpu=float(i))
        for i in range(60)
        if not 24 <= i < 48
    ]
    store(NODE_A, beats, now)
    answer = client.get(
        f"/api/v1/metrics/nodes/{NODE_A}/series",
        params={"metrics": "cpu,mem_percent", "from": start, "to": start + 300, "max_points": 10},
        headers=reader,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["tier"], body["step"], body["from"]) == ("raw", 30, start)
    assert body["timestamps"] == [start + 30 * i for i in range(10)]
    assert body["count"] == [6, 6, 6, 6, 0, 0, 0, 0, 6, 6]
    assert set(body["series"]) == {"cpu", "mem_percent"}
    cpu = body["series"]["cpu"]
    assert cpu["avg"][:2] == [2.5, 8.5]
    assert (cpu["min"][1], cpu["max"][1]) == (6.0, 11.0)
    assert cpu["avg"][4:8] == cpu["min"][4:8] == cpu["max"][4:8] == [None] * 4


async def test_series_picks_the_tier_from_range_and_points(
    api: Api,
    engine: Engine,
) -> None:
    client, reader, make_heartbeat, store = api
    now = time.time()
    store(
        NODE_A,
        [make_heartbeat(seq=i, sent_at=now - 7200 + 60 * i, cpu=50.0) for i in range(120)],
        now,
    )
    await rollups.rollup(engine, chunk=1000)
    url = f"/api/v1/metrics/nodes/{NODE_A}/series"

    def tier(**params: Any) -> tuple[str, int, int]:
        body = client.get(url, params={"metrics": "cpu", **params}, headers=reader).json()
        assert len(body["timestamps"]) == len(body["count"]) <= params.get("max_points", 300)
        return body["tier"], body["step"], sum(body["count"])

    # The last hour, 300 points: 12 s needed, 15 s (a multiple of the 5 s interval) from raw.
    assert tier(**{"from": now - 3600, "to": now}) == ("raw", 15, 60)
    # The last 24 hours, 300 points: 5-minute buckets from the 1-minute tier (past the raw 12 h).
    assert tier(**{"from": now - 86400, "to": now}) == ("1m", 300, 120)
    # The last two hours at 10 points: 12-minute buckets at least, often 13 or 14 once
    # aligned to multiples of the step (it depends on the clock); the 1-minute tier answers.
    two_hours, step, _ = tier(**{"from": now - 7200, "to": now, "max_points": 10})
    assert two_hours == "1m"
    assert step % 60 == 0
    assert 720 <= step <= 840
    # 30 days: the 1-hour tier (past the 1-minute tier's 7 days).
    assert tier(**{"from": now - 30 * 86400, "to": now}) == ("1h", 10800, 120)
    # Defaults: the last hour up to now.
    asked = time.time()
    body = client.get(url, headers=reader).json()
    answered = time.time()
    assert body["tier"] == "raw"
    assert asked - 1 <= body["to"] <= answered + 1  # "now" as the request was served
    assert len(body["series"]) == 19


def test_series_refusals(api: Api) -> None:
    client, reader, make_heartbeat, store = api
    now = time.time()
    store(NODE_A, [make_heartbeat(seq=0, sent_at=now)], now)
    url = f"/api/v1/metrics/nodes/{NODE_A}/series"
    backwards = client.get(url, params={"from": now, "to": now - 60}, headers=reader)
    assert backwards.status_code == 400
    assert backwards.headers["content-type"] == "application/problem+json"
    unknown = client.get(url, params={"metrics": "cpu,bogus"}, headers=reader)
    assert unknown.status_code == 400
    missing = client.get(f"/api/v1/metrics/nodes/{NODE_B}/series", headers=reader)
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"no metrics recorded for node {NODE_B}"


def test_summary_counts_online_nodes_averages_and_tops(
    api: Api,
    redis_client: Redis,
) -> None:
    client, reader, make_heartbeat, store = api
    now = time.time()
    store(NODE_A, [make_heartbeat(seq=0, sent_at=now, cpu=10.0)], now)
    store(NODE_B, [make_heartbeat(seq=0, sent_at=now, cpu=90.0, example=1)], now)
    store(NODE_C, [make_heartbeat(seq=0, sent_at=now, cpu=99.0)], now)
    redis_client.set(presence_key(NODE_A), "gw", ex=30)
    redis_client.set(presence_key(NODE_B), "gw", ex=30)
    body = client.get("/api/v1/metrics/summary", params={"top": 1}, headers=reader).json()
    assert body["nodes"] == {"total": 3, "online": 2, "offline": 1}
    assert body["averages"]["cpu"] == 50.0
    # The example with memory total 1, used 1: 100 %; the other ~29.3 %.
    assert body["averages"]["mem_percent"] == pytest.approx(
        (100.0 + 1203765248 * 100 / 4110147584) / 2, abs=1e-2
    )
    assert [n["node_id"] for n in body["top_cpu"]] == [NODE_B]  # NODE_C (99 %) is offline
    assert [n["node_id"] for n in body["top_memory"]] == [NODE_B]
    empty = client.get("/api/v1/metrics/summary", headers=reader)
    assert empty.status_code == 200
    redis_client.delete(presence_key(NODE_A), presence_key(NODE_B))
    nobody = client.get("/api/v1/metrics/summary", headers=reader).json()
    assert nobody["nodes"]["online"] == 0
    assert nobody["averages"] == {"cpu": None, "mem_percent": None, "disk_percent": None}
    assert nobody["top_cpu"] == []


def test_readyz_and_metrics_report_the_ingest(
    client: TestClient, redis_client: Redis, make_heartbeat: Make
) -> None:
    ready = client.get("/readyz").json()
    assert ready["ingest"] == {
        "alive": False,
        "stream_length": 0,
        "unread": 0,
        "pending": 0,
        "oldest_pending_age": None,
        "consumers": 0,
    }
    redis_client.xgroup_create(METRICS_STREAM, "metrics", id="0", mkstream=True)
    for seq in range(3):
        redis_client.xadd(
            METRICS_STREAM,
            {"n": NODE_A, "h": orjson.dumps(make_heartbeat(seq=seq, sent_at=1.0)), "r": "1"},
        )
    redis_client.xreadgroup("metrics", "c1", {METRICS_STREAM: ">"}, count=1)
    redis_client.set(METRICS_INGEST_HEALTH_KEY, "{}", ex=10)
    redis_client.hset(COUNTERS_KEY, mapping={"stored": 7, "malformed": 2})
    ingest = client.get("/readyz").json()["ingest"]
    assert (ingest["alive"], ingest["stream_length"], ingest["unread"], ingest["pending"]) == (
        True,
        3,
        2,
        1,
    )
    assert ingest["oldest_pending_age"] >= 0
    text = client.get("/metrics").text
    for line in (
        "metrics_ingest_alive 1.0",
        "metrics_ingest_unread 2.0",
        "metrics_ingest_pending 1.0",
        "metrics_ingest_stored_total 7.0",
        "metrics_ingest_malformed_total 2.0",
        "metrics_ingest_too_old_total 0.0",
    ):
        assert line in text.splitlines(), line


def test_every_operation_needs_metrics_read(client: TestClient, data_dir: DataDir) -> None:
    for path in (
        "/api/v1/metrics/latest",
        "/api/v1/metrics/summary",
        f"/api/v1/metrics/nodes/{NODE_A}/series",
    ):
        assert client.get(path).status_code == 401
        refused = client.get(path, headers=bearer(data_dir, NODES_READ))
        assert refused.status_code == 403, path
        assert refused.headers["content-type"] == "application/problem+json"

"""Node-list latency under a steady load, and throughput against a bare Starlette baseline.

Run: ``uv run python bench/node_list.py [--nodes 10000] [--rate 500] [--seconds 30]``

1. Seeds ``--nodes`` nodes through the real enroll endpoint, labels them in
   bulk (``env``, ``role``) and marks a third online (presence keys).
2. Latency: the registry alone under uvicorn (one worker, TLS off, no access
   log); an open-loop client sends ``--rate`` requests/s for ``--seconds``
   (pages of 100 at random offsets; one in four filtered by a selector) and
   measures from each request's scheduled time, so queueing counts.
3. Throughput: ``wrk`` (32 connections) on one page of 100 against the
   registry and against ``node_list_apps.starlette_app`` (same JWT check, same
   domain call), alternating; the ratio is registry / Starlette.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import httpx
import redis
from harness import private_redis, report, served, wrk

from sm_registry import RegistrySettings, create_app
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.scopes import ALL_SCOPES
from sm_shared.streams import presence_key
from sm_shared.tokens import issue_access_token


def facts(i: int) -> dict[str, object]:
    return {
        "hostname": f"host-{i:05d}",
        "os": "Debian GNU/Linux 12",
        "kernel": "6.1.0",
        "arch": "x86_64",
        "cpu_model": "bench",
        "cpu_count": 4,
        "memory_total": 8 << 30,
        "addresses": [],
        "agent_version": "0.1.0",
        "boot_id": f"boot-{i}",
    }


def seed(data: DataDir, redis_url: str, count: int, token: str) -> None:
    app = create_app(RegistrySettings(data_dir=data.root, redis_url=redis_url))
    key = str(load_key(data, KeyKind.ENROLLMENT))
    auth = {"Authorization": f"Bearer {token}"}
    ids: list[str] = []
    started = time.perf_counter()
    with app.test_client() as client:
        for i in range(count):
            response = client.post(
                "/api/v1/enroll",
                json={"key": key, "machine_id": f"machine-{i:05d}", "facts": facts(i)},
            )
            assert response.status_code == 201, response.text
            ids.append(response.json()["node_id"])
        for env, role, chunk in [("prod", "web", 0), ("prod", "db", 1), ("staging", "web", 2)]:
            part = ids[chunk::3]
            for start in range(0, len(part), 1000):
                response = client.post(
                    "/api/v1/nodes/bulk",
                    json={
                        "node_ids": part[start : start + 1000],
                        "labels": {"set": {"env": env, "role": role}},
                    },
                    headers=auth,
                )
                assert response.status_code == 200, response.text
    r = redis.Redis.from_url(redis_url)
    pipe = r.pipeline()
    for node_id in ids[::3]:
        pipe.set(presence_key(node_id), b'{"gateway":"bench"}', ex=3600)
    pipe.execute()
    print(f"seeded {count} nodes in {time.perf_counter() - started:.1f} s")


async def steady_load(url: str, token: str, rate: int, seconds: int, nodes: int) -> list[float]:
    latencies: list[float] = []
    errors = 0
    rng = random.Random(7)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=30
    ) as client:

        async def one(scheduled: float, params: dict[str, str | int]) -> None:
            nonlocal errors
            try:
                response = await client.get(url, params=params)
            except httpx.TransportError:
                errors += 1
                return
            if response.status_code != 200:
                errors += 1
            latencies.append(time.perf_counter() - scheduled)

        tasks = []
        t0 = time.perf_counter() + 0.1
        for i in range(rate * seconds):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            params: dict[str, str | int] = {"limit": 100, "offset": rng.randrange(0, nodes - 100)}
            if i % 4 == 0:
                params = {
                    "limit": 100,
                    "selector": "env=prod,role in (web,db)",
                    "offset": rng.randrange(0, nodes // 2),
                }
            tasks.append(asyncio.create_task(one(scheduled, params)))
        await asyncio.gather(*tasks)
    if errors:
        print(f"  {errors} of {rate * seconds} requests failed")
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn workers for the latency run"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as redis_url:
        data = DataDir(Path(tmp) / "data")
        initialize(data)
        token = issue_access_token(
            data, subject="bench", client_id="bench", scopes=ALL_SCOPES, ttl=7200
        )
        seed(data, redis_url, args.nodes, token)
        env = {**os.environ, "SM_DATA_DIR": str(data.root), "SM_REDIS_URL": redis_url}

        registry = "node_list_apps:registry_app"
        with served(registry, "/api/v1/nodes", env, workers=args.workers) as base:
            url = f"{base}/api/v1/nodes"
            asyncio.run(steady_load(url, token, args.rate, 3, args.nodes))  # warm up
            latencies = asyncio.run(steady_load(url, token, args.rate, args.seconds, args.nodes))
        print(
            f"latency at {args.rate} req/s, {args.workers} worker(s), {args.seconds} s "
            f"({len(latencies)} requests answered): "
            f"p50 {pct(latencies, 0.5) * 1000:.1f} ms, p99 {pct(latencies, 0.99) * 1000:.1f} ms, "
            f"max {max(latencies) * 1000:.1f} ms"
        )

        rates: dict[str, list[float]] = {"starlette_app": [], "registry_app": []}
        for _ in range(args.rounds):
            for app in rates:
                with served(f"node_list_apps:{app}", "/api/v1/nodes", env) as base:
                    page = f"{base}/api/v1/nodes?limit=100&offset=5000"
                    rates[app].append(wrk(page, token, args.wrk_seconds))
        report(rates, "starlette_app")


if __name__ == "__main__":
    main()

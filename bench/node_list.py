"""Node-list latency under a steady load, and throughput against a bare Starlette baseline.

Run: ``uv run python bench/node_list.py [--nodes 10000] [--rate 500] [--seconds 30]``

1. Seeds ``--nodes`` nodes through the real enroll endpoint, labels them in
   bulk (``env``, ``role``) and marks a third online (presence keys).
2. Latency: the registry alone under uvicorn (``--workers``, TLS off, no
   access log); ``hey`` (Debian) sends ``--rate`` requests/s for
   ``--seconds``: three quarters pages of 100 in the middle of the list, one
   quarter pages filtered by a selector. hey's workers are rate-capped, so a
   server slower than the rate shows as a lower answered rate.
3. Throughput: ``wrk`` (32 connections) on one page of 100 against the
   registry and against ``node_list_apps.starlette_app`` (same JWT check, same
   domain call), alternating; the ratio is registry / Starlette.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Steady:
    """One ``hey`` run: ``rate`` requests/s on ``url`` for ``seconds``."""

    name: str
    url: str
    rate: int
    workers: int

    def start(self, token: str, seconds: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                "hey",
                "-z",
                f"{seconds}s",
                "-c",
                str(self.workers),
                "-q",
                f"{self.rate / self.workers:g}",
                "-H",
                f"Authorization: Bearer {token}",
                self.url,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )


def summary(name: str, out: str) -> str:
    """hey's figures: achieved rate, p50, p99, failures (any non-200 is a failure)."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%+ in ([\d.]+) secs", out)
    p99 = re.search(r"99%+ in ([\d.]+) secs", out)
    codes = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", out))
    failed = sum(int(n) for code, n in codes.items() if code != "200")
    errors = out.split("Error distribution:")[1].strip() if "Error distribution:" in out else ""
    if not (rate and p50 and p99):
        raise RuntimeError(f"unexpected hey output:\n{out}")
    line = (
        f"{name}: {float(rate.group(1)):.0f} req/s answered, p50 {float(p50.group(1)) * 1000:.1f} ms, "
        f"p99 {float(p99.group(1)) * 1000:.1f} ms, {failed} non-200"
    )
    return line + (f"; errors: {errors}" if errors else "")


def steady_load(base: str, token: str, rate: int, seconds: int, nodes: int) -> list[str]:
    """Three quarters plain pages of 100, one quarter selector pages, at ``rate`` in all."""
    page = f"{base}/api/v1/nodes?limit=100&offset={nodes // 2}"
    selected = f"{base}/api/v1/nodes?limit=100&selector=env%3Dprod%2Crole%20in%20%28web%2Cdb%29"
    runs = [
        Steady("pages of 100", page, rate * 3 // 4, workers=30),
        Steady("selector pages", selected, rate - rate * 3 // 4, workers=10),
    ]
    procs = [(run, run.start(token, seconds)) for run in runs]
    return [summary(run.name, proc.communicate()[0]) for run, proc in procs]


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
            steady_load(base, token, args.rate, 3, args.nodes)  # warm up
            lines = steady_load(base, token, args.rate, args.seconds, args.nodes)
        print(f"steady {args.rate} req/s for {args.seconds} s, {args.workers} uvicorn worker(s):")
        for line in lines:
            print(f"  {line}")

        rates: dict[str, list[float]] = {"starlette_app": [], "registry_app": []}
        for _ in range(args.rounds):
            for app in rates:
                with served(f"node_list_apps:{app}", "/api/v1/nodes", env) as base:
                    page = f"{base}/api/v1/nodes?limit=100&offset={args.nodes // 2}"
                    rates[app].append(wrk(page, token, args.wrk_seconds))
        report(rates, "starlette_app")


if __name__ == "__main__":
    main()

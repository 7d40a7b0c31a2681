"""Trend queries: 24 h at 1-minute and 30 days at 1-hour resolution, 100 nodes x 30 days of history.

Run: ``uv run python bench/trends.py [--nodes 100] [--days 30] [--rounds 50]``
(quick: ``--nodes 10 --days 30 --rounds 10``).

The metrics database is filled with ``sm_metrics.synthetic.fill`` (every tier
as retention keeps it: raw 12 h at 5 s, 1-minute 7 days, 1-hour the whole
span, for ``--nodes`` nodes); the fill is kept and reused for an hour. Each
query runs ``--rounds`` times over different nodes, three ways:

- raw baseline: the very SQL statement the service runs (captured from
  SQLAlchemy) executed with the standard ``sqlite3`` module, rows fetched;
- ``sm_metrics.history.series``: what the API handler calls (tier choice,
  SQLAlchemy, every bucket listed, missing ones explicit);
- the HTTP API in process (Connexion test client: token check, parameter
  and response validation, JSON).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import private_redis
from running_core import bench_parser
from sqlalchemy import Engine, event

from sm_metrics.history import series
from sm_metrics.schema import create_tables
from sm_metrics.settings import MetricsSettings
from sm_metrics.synthetic import fill, node_ids
from sm_shared.database import create_database_engine
from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.tokens import issue_access_token

KEEP_FILL = 3600.0
TARGET_MS = 50.0
# Range and max_points: one more than range/resolution, since the first bucket is aligned
# at or before `from` (1440 points would make the step 2 minutes).
QUERIES = {"24 h at 1-minute": (86400, 1441), "30 days at 1-hour": (30 * 86400, 721)}


def filled(data: DataDir, settings: MetricsSettings, nodes: int, days: float) -> float:
    """The fill's ``now``: reuses a recent fill of the same size, else fills afresh."""
    marker = data.root / "trends-fill.json"
    database = data.database("metrics")
    if marker.exists() and database.exists():
        kept = json.loads(marker.read_text())
        if (
            kept["nodes"] == nodes
            and kept["days"] == days
            and time.time() - kept["now"] < KEEP_FILL
        ):
            return float(kept["now"])
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    engine = create_database_engine(settings.database_url)
    create_tables(engine)
    now = time.time()
    began = time.monotonic()
    done = fill(engine, nodes=nodes, days=days, now=now, settings=settings)
    engine.dispose()
    print(
        f"filled {nodes} nodes x {days:g} days in {time.monotonic() - began:.0f} s: raw {done.raw}, "
        f"1-minute {done.minute}, 1-hour {done.hour} rows; {database.stat().st_size / 2**20:.0f} MiB"
    )
    marker.write_text(json.dumps({"nodes": nodes, "days": days, "now": now}))
    return now


def captured_sql(engine: Engine, call: Callable[[], object]) -> tuple[str, Any]:
    """The last statement and parameters ``call`` sent to the database."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen[-1]


def timed(rounds: int, call: Callable[[int], object]) -> list[float]:
    call(0)  # warm: statement cache, pages
    out = []
    for i in range(rounds):
        began = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - began) * 1000)
    return out


def line(name: str, values: list[float], base: float) -> str:
    median = statistics.median(values)
    p95 = sorted(values)[int(0.95 * (len(values) - 1))]
    return f"    {name:34} median {median:7.2f} ms  p95 {p95:7.2f} ms  ratio {median / base:5.1f}"


def main() -> None:
    p = bench_parser(__doc__, "trends")
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--days", type=float, default=30)
    p.add_argument("--rounds", type=int, default=50)
    args = p.parse_args()
    # Connexion's test client imports starlette.testclient, which warns about httpx (upstream).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from sm_metrics import create_app

    data = DataDir(args.data_dir)
    initialize(data)
    with tempfile.TemporaryDirectory() as tmp, private_redis(Path(tmp)) as redis_url:
        settings = MetricsSettings(data_dir=data.root, redis_url=redis_url, heartbeat_interval=5)
        filled(data, settings, args.nodes, args.days)
        engine = create_database_engine(settings.database_url)
        raw = sqlite3.connect(data.database("metrics"))
        ids = node_ids(args.nodes)
        token = issue_access_token(
            data, subject="bench", client_id="bench", scopes=["metrics:read"], ttl=3600
        )
        auth = {"Authorization": f"Bearer {token}"}
        app = create_app(settings)
        print(
            f"trend queries, {args.nodes} nodes x {args.days:g} days, {args.rounds} rounds each (target < {TARGET_MS:g} ms)"
        )
        with app.test_client() as client:
            for name, (span, points) in QUERIES.items():

                def function(i: int, span: int = span, points: int = points) -> dict[str, Any]:
                    now = time.time()
                    return series(
                        engine, ids[i % len(ids)], start=now - span, end=now,
                        max_points=points, now=now, settings=settings,
                    )  # fmt: skip

                def api(i: int, span: int = span, points: int = points) -> None:
                    now = time.time()
                    query = {"from": now - span, "to": now, "max_points": points}
                    response = client.get(
                        f"/api/v1/metrics/nodes/{ids[i % len(ids)]}/series",
                        params=query,
                        headers=auth,
                    )
                    assert response.status_code == 200, response.text

                answer = function(0)
                filled_buckets = sum(1 for c in answer["count"] if c)
                statement, parameters = captured_sql(engine, lambda: function(0))

                def baseline(
                    i: int, statement: str = statement, parameters: Any = parameters
                ) -> None:
                    args_ = list(parameters)
                    args_[args_.index(ids[0])] = ids[i % len(ids)]
                    raw.execute(statement, args_).fetchall()

                table = {"1m": "rollup_1m", "1h": "rollup_1h"}[answer["tier"]]

                def floor(i: int, span: int = span, table: str = table) -> None:
                    now = time.time()
                    raw.execute(
                        f"SELECT * FROM {table} WHERE node_id = ? AND bucket >= ? AND bucket < ?",  # noqa: S608 (a table name of ours)
                        (ids[i % len(ids)], now - span, now),
                    ).fetchall()

                results = {
                    "raw sqlite3, same SQL": timed(args.rounds, baseline),
                    "raw sqlite3, the rows only (floor)": timed(args.rounds, floor),
                    "history.series (function)": timed(args.rounds, function),
                    "HTTP API (in process)": timed(args.rounds, api),
                }
                print(
                    f"  {name}: tier {answer['tier']}, step {answer['step']} s, "
                    f"{len(answer['timestamps'])} buckets ({filled_buckets} with data)"
                )
                base = statistics.median(results["raw sqlite3, same SQL"])
                for label, values in results.items():
                    print(line(label, values, base))
        raw.close()
        engine.dispose()


if __name__ == "__main__":
    main()

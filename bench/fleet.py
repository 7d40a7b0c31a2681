"""Fleet capacity: N agents on one gateway process at the heartbeat interval, against a bare server.

Run: ``uv run python bench/fleet.py [--agents 10000] [--minutes 5] [--interval 5] [--ramp 100]``
(quick: ``--agents 500 --minutes 0.5``).

1. A core (``smctl up --no-agent``, private Redis, the metrics ingest
   consumer) on a kept data directory; the swarm's nodes are enrolled for real
   (once: credentials are cached in the data directory).
2. The gateway: the swarm ramps up, warms up two intervals, then sends for
   ``--minutes``. Measured: gateway CPU (``/proc/<pid>/stat``; also the API,
   the ingest, the worker and Redis), gateway RSS per connection, every
   heartbeat acknowledged and committed (rows of this run's boot ids in the
   metrics database against heartbeats sent), send→ack and send→commit lag
   (see :mod:`commit_watch` for how the commit time is observed), Redis
   memory per agent and database bytes per stored heartbeat.
3. The raw baseline in the same run: the same swarm against :mod:`bare_ws`
   (same TLS certificate, compression off, receive and parse with orjson).
   Ratios: gateway / bare for RSS per connection and CPU.
"""

from __future__ import annotations

import argparse
import asyncio

from bare_ws import bare_server
from procstat import raise_fd_limit, rss_bytes
from running_core import bench_parser, running_core
from swarm import shrink_client_tls_buffers
from swarm_credentials import client_tls, credentials
from swarm_phase import Phase, Setup, gateway_phase, run_phase
from swarm_sample import check_against_contract

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize

# What would close the memory gap: asyncio's TLS read buffer (256 KiB per connection) shrunk.
SMALL_TLS_BUFFER = 16 * 1024


async def main_async(args: argparse.Namespace) -> None:
    data = DataDir(args.data_dir)
    initialize(data)
    print(f"heartbeat of {check_against_contract()} bytes valid per the protocol schema")
    print(f"open-file limit {raise_fd_limit()}")
    shrink_client_tls_buffers()
    context = client_tls(data)
    seconds = args.minutes * 60
    warmup = 2 * args.interval
    env = {"SM_HEARTBEAT_INTERVAL": str(args.interval)}
    database = data.database("metrics")
    with running_core(data.root, env) as core:
        creds = await credentials(data, core.api_url, args.agents)
        pids = core.processes
        redis_idle = rss_bytes(pids["redis"])
        db_rows_bytes = database.stat().st_size if database.exists() else 0
        setup = Setup(context, creds, args.ramp, warmup)
        gateway = await gateway_phase(
            "gateway", setup, core=core, database=database, rate=None, seconds=seconds
        )
        redis_loaded = rss_bytes(pids["redis"])
        db_growth = database.stat().st_size - db_rows_bytes

    async def bare_phase(name: str, tls_read_buffer: int | None = None) -> tuple[Phase, int]:
        with bare_server(data, args.interval, tls_read_buffer) as bare:
            phase = await run_phase(
                name, setup, url=bare.url, server_pid=bare.pid, others={}, rate=None,
                seconds=args.baseline_minutes * 60,
            )  # fmt: skip
            return phase, bare.stats()["messages"]

    baseline, received = await bare_phase("bare websockets server")
    small, _ = await bare_phase(
        f"bare websockets server, {SMALL_TLS_BUFFER // 1024} KiB TLS read buffer", SMALL_TLS_BUFFER
    )
    report(gateway, baseline, args)
    for line in small.lines():
        print(line)
    print(
        f"RSS per connection, bare with a {SMALL_TLS_BUFFER // 1024} KiB TLS read buffer / bare: "
        f"{small.per_connection / baseline.per_connection:.2f}"
    )
    print(f"  bare server received {received} messages (hellos included)")
    print(
        f"Redis RSS {redis_idle / 2**20:.1f} → {redis_loaded / 2**20:.1f} MiB "
        f"({(redis_loaded - redis_idle) / args.agents / 1024:.1f} KiB per agent, stream included)"
    )
    if gateway.committed:
        print(
            f"metrics.db grew {db_growth / 2**20:.1f} MiB: {db_growth / gateway.committed:.0f} bytes per stored heartbeat"
        )


def report(gateway: Phase, baseline: Phase, args: argparse.Namespace) -> None:
    print()
    print(f"fleet: {args.agents} agents, one heartbeat every {args.interval} s, {args.minutes} min")
    for phase in (baseline, gateway):
        for line in phase.lines():
            print(line)
    ratio = gateway.per_connection / baseline.per_connection
    cpu = gateway.cpu["server"] / max(baseline.cpu["server"], 1e-9)
    print(f"RSS per connection: gateway / bare = {ratio:.2f} (target ≤ 2)")
    print(f"CPU: gateway / bare = {cpu:.1f}")


def main() -> None:
    p = bench_parser(__doc__, "fleet")
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument(
        "--minutes", type=float, default=5.0, help="measured window, after ramp and warm-up"
    )
    p.add_argument(
        "--baseline-minutes", type=float, default=1.0, help="measured window of the bare server"
    )
    p.add_argument("--interval", type=int, default=5, help="heartbeat interval (seconds)")
    p.add_argument("--ramp", type=float, default=100, help="agents started per second")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()

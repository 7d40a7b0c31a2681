"""End-to-end throughput: fewer agents sending faster, agent → gateway → stream → ingest → SQLite.

Run: ``uv run python bench/throughput.py [--agents 100] [--steps 1000,2000,3000,4000,5000,6000] [--seconds 20]``
(quick: ``--agents 20 --steps 500,1000 --seconds 5``).

1. A core (``smctl up --no-agent``, heartbeat interval 1 s) on a kept data
   directory; ``--agents`` nodes enrolled for real (cached).
2. Steps: the swarm sends ``step`` heartbeats/s in all (each agent
   step/agents per second) for ``--seconds`` after a warm-up. A step is
   *sustained* when every heartbeat sent was acknowledged and committed (rows
   in the metrics database), the p99 send→commit lag stayed under 2 s and the
   swarm really sent at least 95 % of the step. The highest sustained step is
   the result; the steps stop at the first one that fails.
3. Flat out: the swarm sends as fast as it can through the gateway (loss
   still checked), with ``py-spy record`` on the gateway and the ingest (if
   ``py-spy`` is installed: ``uv tool install py-spy``).
4. The raw baseline in the same run: the same swarm flat out against
   :mod:`bare_ws` (receive and parse with orjson, same TLS, compression off);
   its received rate is the ceiling for this simulator on these cores.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bare_ws import bare_server
from procstat import raise_fd_limit
from pyspy_profile import profiled, summary
from running_core import bench_parser, running_core
from swarm import percentile, shrink_client_tls_buffers
from swarm_credentials import client_tls, credentials
from swarm_phase import Phase, Setup, gateway_phase, run_phase

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize

LAG_LIMIT = 2.0


def sustained(phase: Phase, target: float) -> tuple[bool, str]:
    p99 = percentile(phase.commit_lags, 0.99)
    sent_rate = phase.sent_in_window / phase.seconds
    missing = phase.distinct_sent - (phase.committed or 0)
    ok = missing == 0 and phase.unacked == 0 and p99 < LAG_LIMIT and sent_rate >= 0.95 * target
    why = (
        f"sent {sent_rate:.0f}/s, acknowledged {phase.acked_rate:.0f}/s, missing {missing}, "
        f"unacknowledged {phase.unacked}, p99 send→commit {p99 * 1000:.0f} ms"
    )
    return ok, why


async def main_async(args: argparse.Namespace) -> None:
    data = DataDir(args.data_dir)
    initialize(data)
    raise_fd_limit()
    shrink_client_tls_buffers()
    context = client_tls(data)
    database = data.database("metrics")
    results: list[tuple[int, bool, str]] = []
    profile_dir = Path(tempfile.mkdtemp(prefix="sm-throughput-"))
    with running_core(data.root, {"SM_HEARTBEAT_INTERVAL": "1"}) as core:
        creds = await credentials(data, core.api_url, args.agents)
        pids = core.processes

        setup = Setup(context, creds, args.ramp, args.warmup)

        async def phase(name: str, rate: float) -> Phase:
            return await gateway_phase(
                name, setup, core=core, database=database, rate=rate, seconds=args.seconds
            )

        for step in args.steps:
            result = await phase(f"gateway {step}/s", step / args.agents)
            ok, why = sustained(result, step)
            results.append((step, ok, why))
            print(f"step {step}/s: {'sustained' if ok else 'NOT sustained'} ({why})")
            for line in result.lines():
                print(line)
            if not ok:
                break
        with ExitStack() as stack:
            recording = {
                name: stack.enter_context(profiled(pids[name], profile_dir / f"{name}.txt"))
                for name in ("gateway", "metrics-ingest")
            }
            flat = await phase("gateway flat out", 0)
        _ok, flat_why = sustained(flat, 0)
    with bare_server(data, 1) as bare:
        baseline = await run_phase(
            "bare flat out", setup, url=bare.url, server_pid=bare.pid, others={}, rate=0,
            seconds=args.seconds, received=lambda: bare.stats()["messages"],
        )  # fmt: skip

    print()
    print(f"throughput: {args.agents} agents, {args.seconds:g} s per step")
    for step, ok, why in results:
        print(f"  step {step:6d}/s  {'sustained    ' if ok else 'NOT sustained'}  {why}")
    best = max((step for step, ok, _ in results if ok), default=0)
    for p in (baseline, flat):
        for line in p.lines():
            print(line)
    print(f"gateway flat out: {flat_why}")
    base = baseline.received_rate
    print(f"bare receive-and-parse ceiling (same swarm, same TLS): {base:.0f} heartbeats/s")
    print(f"highest sustained step: {best}/s, ratio to the bare ceiling {best / base:.2f}")
    print(
        f"gateway flat out, acknowledged: {flat.acked_rate:.0f}/s, ratio {flat.acked_rate / base:.2f}"
    )
    for name, recorded in recording.items():
        if recorded:
            print(f"profile of {name} while flat out ({profile_dir / (name + '.txt')}):")
            for line in summary(profile_dir / f"{name}.txt"):
                print(f"  {line}")


def main() -> None:
    p = bench_parser(__doc__, "throughput")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument(
        "--steps",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1000, 2000, 3000, 4000, 5000, 6000],
        help="total heartbeats/s of each step, comma-separated",
    )
    p.add_argument("--seconds", type=float, default=20, help="measured window per step")
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--ramp", type=float, default=200, help="agents started per second")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()

"""Agent footprint: a real ``sm-agent run`` against a real core, RSS and CPU, against a minimal loop.

Run: ``uv run python bench/agent_footprint.py [--minutes 10] [--interval 5] [--outage 0.2]``
(quick: ``--minutes 1``).

A core (``smctl up --no-agent``, heartbeat interval ``--interval``) and the
real agent (``python -m sm_agent run``: enrolls with the enrollment key on
its first run, then heartbeats with its on-disk buffer); beside it the raw
baseline, :mod:`footprint_baseline` (psutil + websockets, one TLS connection
to :mod:`bare_ws`), measured in the same run. After a warm-up, both are
measured for ``--minutes``: CPU from ``/proc/<pid>/stat``, RSS sampled every
5 s (peak and last), USS at the end. To load the buffer, the gateway is
frozen (SIGSTOP) for the ``--outage`` fraction of the window in its middle:
the agent keeps sampling into its buffer, then reconnects and sends the
backlog at the welcome's ``backlog_rate``. Every heartbeat the agent took
must then be in the metrics database.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bare_ws import bare_server
from harness import HERE
from procstat import CpuWindow, rss_bytes, uss_bytes
from running_core import bench_parser, running_core

from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize

WARMUP = 20.0
RSS_EVERY = 5.0


def rows_of(database: Path, node_id: str) -> tuple[int, int, int]:
    """The node's stored heartbeats: count, lowest and highest seq (no gap: count = span)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        count, low, high = conn.execute(
            "SELECT count(*), min(seq), max(seq) FROM samples WHERE node_id = ?", (node_id,)
        ).fetchone()
    return int(count), int(low), int(high)


def main() -> None:
    p = bench_parser(__doc__, "footprint")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument(
        "--interval", type=int, default=5, help="the core's heartbeat interval (the default is 5)"
    )
    p.add_argument(
        "--outage", type=float, default=0.2, help="fraction of the window the gateway is frozen"
    )
    args = p.parse_args()
    data = DataDir(args.data_dir)
    initialize(data)
    state = data.root / f"agent-{int(time.time())}"
    seconds = args.minutes * 60
    with (
        running_core(data.root, {"SM_HEARTBEAT_INTERVAL": str(args.interval)}) as core,
        bare_server(data, args.interval) as bare,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        agent = subprocess.Popen(
            [sys.executable, "-m", "sm_agent", "run", "--server", core.api_url,
             "--key", str(load_key(data, KeyKind.ENROLLMENT)), "--state-dir", str(state),
             "--gateway-url", core.gateway_url, "--log-level", "WARNING"],
            env=env,
        )  # fmt: skip
        baseline = subprocess.Popen(
            [sys.executable, str(HERE / "footprint_baseline.py"), bare.url, str(data.ca_cert), str(args.interval)],
            env=env,
        )  # fmt: skip
        try:
            time.sleep(WARMUP)
            procs = {"sm-agent": agent.pid, "minimal loop": baseline.pid}
            cpu = {name: CpuWindow(pid) for name, pid in procs.items()}
            for window in cpu.values():
                window.start()
            rss: dict[str, list[int]] = {name: [] for name in procs}
            began = time.monotonic()
            freeze_at = seconds * (0.5 - args.outage / 2)
            thaw_at = freeze_at + seconds * args.outage
            frozen = thawed = False
            while (elapsed := time.monotonic() - began) < seconds:
                if not frozen and elapsed >= freeze_at and args.outage > 0:
                    os.kill(core.processes["gateway"], signal.SIGSTOP)
                    frozen = True
                    print(f"{elapsed:5.0f} s: gateway frozen")
                if frozen and not thawed and elapsed >= thaw_at:
                    os.kill(core.processes["gateway"], signal.SIGCONT)
                    thawed = True
                    print(f"{elapsed:5.0f} s: gateway thawed")
                for name, pid in procs.items():
                    rss[name].append(rss_bytes(pid))
                time.sleep(RSS_EVERY)
            shares = {name: window.stop() for name, window in cpu.items()}
            uss = {name: uss_bytes(pid) for name, pid in procs.items()}
            time.sleep(2 * args.interval)  # the last heartbeats committed
            node_id = json.loads((state / "node.json").read_text())["node_id"]
            stored = rows_of(data.database("metrics"), node_id)
        finally:
            if frozen and not thawed:
                os.kill(core.processes["gateway"], signal.SIGCONT)
            for proc in (agent, baseline):
                proc.terminate()
                proc.wait()
    print()
    print(
        f"agent footprint: {args.minutes:g} min at a {args.interval} s interval, gateway frozen {args.outage:.0%} of it"
    )
    for name in procs:
        print(
            f"  {name:13} RSS peak {max(rss[name]) / 2**20:5.1f} MiB, last {rss[name][-1] / 2**20:5.1f} MiB, "
            f"USS {uss[name] / 2**20:5.1f} MiB, CPU {shares[name] * 100:.3f} % of a core"
        )
    a, b = "sm-agent", "minimal loop"
    print(
        f"  ratios agent / minimal loop: RSS peak {max(rss[a]) / max(rss[b]):.2f}, "
        f"CPU {shares[a] / max(shares[b], 1e-9):.2f}"
    )
    print(
        f"  targets: RSS ≤ 26 MB ({max(rss[a]) / 1e6:.1f} MB), CPU ≤ 0.2 % ({shares[a] * 100:.3f} %)"
    )
    count, low, high = stored
    print(
        f"  heartbeats of the agent's node in the metrics database: {count} "
        f"(seq {low}..{high}: {high - low + 1 - count} missing)"
    )


if __name__ == "__main__":
    main()

"""One measured swarm run against one server process (the gateway or the bare baseline).

Ramp the agents up, let them send for a warm-up, then measure a window:
the server's CPU share and its RSS before any connection and at the end of
the window (the difference over the agents is its memory per connection),
the heartbeats sent and acknowledged, the send→ack lag (and, with a
:class:`~commit_watch.CommitWatch`, the send→commit lag) of heartbeats sent
inside the window. Then stop, let the last acks arrive and close.
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from commit_watch import CommitWatch
from procstat import CpuWindow, rss_bytes
from swarm import Swarm, percentile
from swarm_credentials import Credential

from sm_ctl.banner import Banner

LATE = 2.0


@dataclass
class Phase:
    name: str
    agents: int
    ramp_seconds: float = 0.0
    window: tuple[float, float] = (0.0, 0.0)
    rss_idle: int = 0
    rss_loaded: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    sent_in_window: int = 0
    received_in_window: int = 0
    acked_in_window: int = 0
    sent: int = 0
    acked: int = 0
    unacked: int = 0
    ack_lags: list[float] = field(default_factory=list)
    commit_lags: list[float] = field(default_factory=list)
    # (sent at, send→commit lag) of the heartbeats sent in the window.
    commit_times: list[tuple[float, float]] = field(default_factory=list)
    committed: int | None = None
    distinct_sent: int = 0
    swarm_line: str = ""

    @property
    def seconds(self) -> float:
        return self.window[1] - self.window[0]

    @property
    def received_rate(self) -> float:
        return self.received_in_window / self.seconds

    @property
    def acked_rate(self) -> float:
        return self.acked_in_window / self.seconds

    @property
    def per_connection(self) -> float:
        return (self.rss_loaded - self.rss_idle) / self.agents

    def lines(self) -> list[str]:
        out = [
            f"[{self.name}] {self.agents} agents welcomed in {self.ramp_seconds:.1f} s; "
            f"window {self.seconds:.0f} s: {self.sent_in_window / self.seconds:.0f} heartbeats/s sent"
            + (f", {self.acked_in_window / self.seconds:.0f}/s acknowledged" if self.acked else "")
            + (f", {self.received_rate:.0f}/s received" if self.received_in_window else ""),
            f"  RSS {self.rss_idle / 2**20:.1f} MiB idle → {self.rss_loaded / 2**20:.1f} MiB loaded: "
            f"{self.per_connection / 1024:.1f} KiB per connection",
            "  CPU (1.0 = one core): " + ", ".join(f"{k} {v:.3f}" for k, v in self.cpu.items()),
        ]
        for label, lags in (
            ("send→ack", self.ack_lags),
            ("send→commit (upper bound)", self.commit_lags),
        ):
            if lags:
                out.append(
                    f"  {label} over {len(lags)} heartbeats: p50 {statistics.median(lags) * 1000:.0f} ms, "
                    f"p99 {percentile(lags, 0.99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
                )
        late = [ts - self.window[0] for ts, lag in self.commit_times if lag > LATE]
        if late:
            out.append(
                f"  committed later than {LATE:g} s: {len(late)} heartbeats, sent between "
                f"{min(late):.0f} s and {max(late):.0f} s into the window"
            )
        if self.committed is not None:
            out.append(
                f"  heartbeats sent {self.distinct_sent} (distinct), acknowledged {self.acked}, "
                f"committed {self.committed}, missing {self.distinct_sent - self.committed}"
            )
        out.append(f"  swarm: {self.swarm_line}")
        return out


@dataclass(frozen=True)
class Setup:
    """What every phase of one benchmark shares: TLS, nodes, ramp and warm-up."""

    context: ssl.SSLContext
    creds: list[Credential]
    ramp: float
    warmup: float


async def run_phase(
    name: str,
    setup: Setup,
    *,
    url: str,
    server_pid: int,
    others: dict[str, int],
    rate: float | None,
    seconds: float,
    watch: Callable[[str], CommitWatch] | None = None,
    received: Callable[[], int] | None = None,
) -> Phase:
    """``received``, if given, reads the server's own count of messages (the bare server's)."""
    creds, context = setup.creds, setup.context
    phase = Phase(name, len(creds))
    phase.rss_idle = rss_bytes(server_pid)
    swarm = Swarm.build(creds, rate=rate, expect_acks=watch is not None)
    with ExitStack() as stack:
        watcher = stack.enter_context(watch(swarm.boot_prefix)) if watch else None
        try:
            phase.ramp_seconds = await swarm.ramp_up(url, context, setup.ramp)
            print(f"[{name}] {len(creds)} agents welcomed in {phase.ramp_seconds:.1f} s")
            await swarm.run_for(setup.warmup)
            windows = {"server": CpuWindow(server_pid)} | {
                k: CpuWindow(p) for k, p in others.items()
            }
            for w in windows.values():
                w.start()
            sent0, acked0 = swarm.stats.sent, swarm.stats.acked
            received0 = received() if received else 0
            start = time.time()
            await swarm.run_for(seconds)
            phase.window = (start, time.time())
            phase.cpu = {k: w.stop() for k, w in windows.items()}
            phase.rss_loaded = rss_bytes(server_pid)
            phase.sent_in_window = swarm.stats.sent - sent0
            phase.acked_in_window = swarm.stats.acked - acked0
            if received:
                phase.received_in_window = received() - received0
        finally:
            await swarm.finish()
        phase.sent, phase.acked = swarm.stats.sent, swarm.stats.acked
        phase.unacked = swarm.unacked()
        phase.distinct_sent = sum(a.seq for a in swarm.agents)
        phase.ack_lags = swarm.stats.lags_sent_between(*phase.window)
        phase.swarm_line = swarm.stats.line()
        if watcher is not None:
            deadline = time.monotonic() + 60
            # polling another process's database: there is no event to wait on
            while watcher.committed() < phase.distinct_sent and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(1)
            await asyncio.sleep(watcher.interval * 2)  # the last rows seen by the poller too
            phase.committed = watcher.committed()
            phase.commit_times = watcher.sent_between(*phase.window)
            phase.commit_lags = [lag for _ts, lag in phase.commit_times]
    return phase


async def gateway_phase(
    name: str, setup: Setup, *, core: Banner, database: Path, rate: float | None, seconds: float
) -> Phase:
    """:func:`run_phase` against the gateway of a running core, commits watched in ``database``;
    the core's other processes' CPU is measured too."""
    pids = core.processes
    return await run_phase(
        name,
        setup,
        url=core.gateway_url,
        server_pid=pids["gateway"],
        others={k: v for k, v in pids.items() if k != "gateway"},
        rate=rate,
        seconds=seconds,
        watch=lambda prefix: CommitWatch(database, prefix),
    )

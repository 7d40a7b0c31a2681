"""Thousands of simulated agents in one process, over the real agent protocol.

Run: ``uv run python bench/swarm.py --data-dir DIR --api URL --gateway URL [--agents 1000]``
against a running core (``smctl up``: the banner names the API and the gateway).

Each simulated agent is a real node: enrolled through the registry with the
enrollment key (credentials cached in the data directory, see
:mod:`swarm_credentials`), connected over TLS verified with the data
directory's CA (compression off, like the agent), saying ``hello`` with its
facts, waiting for ``welcome``, then sending a full heartbeat every interval
(the welcome's, or ``--rate`` per agent). It keeps every heartbeat until a
cumulative ``ack`` covers it and sends the unacknowledged ones again after a
reconnect, paced at the welcome's ``backlog_rate``, as the agent does. Agents
start gradually (``--ramp`` per second). Each heartbeat's send time is kept
per (boot id, seq), so lag can be measured against any later stage; the
send→ack lag (durable in the ``metrics`` stream) is measured here.

A :class:`GatewayMessageHandler` given to :meth:`Swarm.build` receives every
gateway message other than ``ack`` (``execute``, ``cancel``, ``result_ack``:
see :mod:`swarm_executions`) and is called once per connection, right after
``welcome`` and before any heartbeat, to send what it still holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import ssl
import statistics
import time
import uuid
from array import array
from asyncio import sslproto
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from procstat import raise_fd_limit
from swarm_credentials import Credential, client_tls, credentials
from swarm_sample import SampleSource, check_against_contract, heartbeat, hello
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sm_shared.datadir import DataDir

WELCOME_TIMEOUT = 60.0
OPEN_TIMEOUT = 120.0
RECONNECT_DELAY = (1.0, 5.0)


def shrink_client_tls_buffers(size: int = 32 * 1024) -> None:
    """The simulator's own TLS read buffers (asyncio: 256 KiB per connection) made smaller,
    so ten thousand simulated agents fit beside the core. The servers measured keep theirs."""
    sslproto.SSLProtocol.max_size = size


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Stats:
    """What the whole swarm saw; counters only grow."""

    connected: int = 0
    welcomed: int = 0
    sent: int = 0
    resent: int = 0
    acked: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    backlog_rates: Counter[float] = field(default_factory=Counter)
    # One entry per acknowledged heartbeat: when it was first sent, and send→ack seconds.
    ack_sent_at: array[float] = field(default_factory=lambda: array("d"))
    ack_lag: array[float] = field(default_factory=lambda: array("d"))

    def lags_sent_between(self, start: float, end: float) -> list[float]:
        return [
            lag
            for sent, lag in zip(self.ack_sent_at, self.ack_lag, strict=True)
            if start <= sent < end
        ]

    def line(self) -> str:
        return (
            f"connected {self.connected}, welcomed {self.welcomed}, sent {self.sent} "
            f"(resent {self.resent}), acked {self.acked}, failures {dict(self.failures)}, "
            f"closes {dict(self.closes)}"
        )


class GatewayMessageHandler(Protocol):
    """What a simulated agent does with the gateway's messages beyond heartbeat acks."""

    async def on_connect(self, ws: ClientConnection) -> None:
        """Called after ``welcome``, before any heartbeat (resend what is unacknowledged)."""

    async def handle(self, message: dict[str, Any], ws: ClientConnection) -> None:
        """One gateway message other than ``ack``, already decoded."""


@dataclass
class Pending:
    index: int  # 1-based position among the heartbeats sent on this connection
    seq: int
    payload: bytes


class SimAgent:
    """One simulated node: its credential, boot id, samples and unacknowledged heartbeats."""

    def __init__(
        self,
        credential: Credential,
        run_id: str,
        stats: Stats,
        *,
        rate: float | None,
        expect_acks: bool,
        handler: GatewayMessageHandler | None = None,
    ) -> None:
        self.credential = credential
        self.handler = handler
        self.boot_id = f"swarm-{run_id}-{credential.index}"
        self.stats = stats
        self.rate = rate
        self.expect_acks = expect_acks
        self.rng = random.Random(f"{run_id}-{credential.index}")
        self.samples = SampleSource(self.rng)
        self.seq = 0
        # Wall-clock time each seq was first sent (index = seq).
        self.sent_times: array[float] = array("d")
        self.unacked: deque[Pending] = deque()
        self._index = 0
        self._last_sample = time.time()

    async def run(self, url: str, context: ssl.SSLContext, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with connect(
                    url,
                    ssl=context,
                    additional_headers={"Authorization": f"Bearer {self.credential.credential}"},
                    user_agent_header="sm-swarm",
                    compression=None,
                    open_timeout=OPEN_TIMEOUT,
                    close_timeout=5,
                    max_size=1 << 20,
                ) as ws:
                    self.stats.connected += 1
                    try:
                        await self._session(ws, stop)
                    finally:
                        self.stats.connected -= 1
            except InvalidStatus as exc:
                self.stats.failures[f"http {exc.response.status_code}"] += 1
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else "none"
                self.stats.closes[str(code)] += 1
            except (OSError, TimeoutError) as exc:
                self.stats.failures[type(exc).__name__] += 1
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.rng.uniform(*RECONNECT_DELAY))

    async def _session(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        await ws.send(orjson.dumps(hello(self.credential.index, self.boot_id)).decode())
        welcome = orjson.loads(await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT))
        if welcome.get("type") != "welcome":
            raise ConnectionError(f"expected welcome, got {welcome.get('type')}")
        self.stats.welcomed += 1
        backlog_rate = float(welcome.get("backlog_rate", 10.0))
        self.stats.backlog_rates[backlog_rate] += 1
        if self.handler is not None:
            await self.handler.on_connect(ws)
        interval = 1 / self.rate if self.rate else float(welcome["heartbeat_interval"])
        self._index = 0
        backlog = list(self.unacked)
        self.unacked.clear()
        tasks = [asyncio.create_task(self._receive(ws))]
        if backlog:
            tasks.append(asyncio.create_task(self._resend(ws, backlog, backlog_rate)))
        try:
            await self._beat(ws, stop, interval, tasks[0])
        finally:
            for task in tasks:
                task.cancel()

    async def _send(self, ws: ClientConnection, seq: int, payload: bytes) -> None:
        self._index += 1
        if self.expect_acks:
            self.unacked.append(Pending(self._index, seq, payload))
        await ws.send(payload.decode())

    async def _beat(
        self,
        ws: ClientConnection,
        stop: asyncio.Event,
        interval: float,
        receiver: asyncio.Task[None],
    ) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            now = time.time()
            sample = self.samples.sample(now - self._last_sample)
            self._last_sample = now
            seq = self.seq
            self.seq += 1
            self.sent_times.append(now)
            payload = orjson.dumps(heartbeat(self.boot_id, seq, now, sample))
            await self._send(ws, seq, payload)
            self.stats.sent += 1
            if self.rate == 0:  # flat out: only yield to the loop
                await asyncio.sleep(0)
                if receiver.done():
                    receiver.result()
                    return
                continue
            next_at = max(next_at + interval, loop.time())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait(
                    {stopping, receiver},
                    timeout=next_at - loop.time(),
                    return_when="FIRST_COMPLETED",
                )
            finally:
                stopping.cancel()
            if receiver.done():
                receiver.result()  # raises ConnectionClosed
                return
        await self._drain(receiver)

    async def _drain(self, receiver: asyncio.Task[None]) -> None:
        """After stop: wait (bounded) for the acks of what was sent, then close."""
        deadline = time.monotonic() + 30
        while self.expect_acks and self.unacked and time.monotonic() < deadline:
            if receiver.done():
                return
            await asyncio.sleep(0.2)

    async def _resend(self, ws: ClientConnection, backlog: list[Pending], rate: float) -> None:
        for item in backlog:
            await self._send(ws, item.seq, item.payload)
            self.stats.resent += 1
            await asyncio.sleep(1 / rate)

    async def _receive(self, ws: ClientConnection) -> None:
        async for raw in ws:
            message = orjson.loads(raw)
            if message.get("type") != "ack":
                if self.handler is not None:
                    await self.handler.handle(message, ws)
                continue
            upto = int(message["upto"])
            now = time.time()
            while self.unacked and self.unacked[0].index <= upto:
                item = self.unacked.popleft()
                sent = self.sent_times[item.seq]
                self.stats.acked += 1
                self.stats.ack_sent_at.append(sent)
                self.stats.ack_lag.append(now - sent)


@dataclass
class Swarm:
    """The agents of one run and how they are driven."""

    agents: list[SimAgent]
    stats: Stats
    run_id: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        creds: list[Credential],
        *,
        rate: float | None,
        expect_acks: bool,
        handler: Callable[[Credential], GatewayMessageHandler] | None = None,
    ) -> Swarm:
        """``handler``, if given, makes each agent's :class:`GatewayMessageHandler`."""
        run_id = uuid.uuid4().hex[:10]
        stats = Stats()
        agents = [
            SimAgent(
                c,
                run_id,
                stats,
                rate=rate,
                expect_acks=expect_acks,
                handler=handler(c) if handler else None,
            )
            for c in creds
        ]
        return cls(agents, stats, run_id)

    @property
    def boot_prefix(self) -> str:
        """Every boot id of this run starts with it."""
        return f"swarm-{self.run_id}-"

    async def ramp_up(
        self, url: str, context: ssl.SSLContext, per_second: float, within: float = 600
    ) -> float:
        """Start every agent, ``per_second`` at a time; seconds until all were welcomed."""
        began = time.monotonic()
        said = began
        for i, agent in enumerate(self.agents):
            self.tasks.append(asyncio.create_task(agent.run(url, context, self.stop)))
            delay = began + (i + 1) / per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() - said >= 10:
                said = time.monotonic()
                print(f"  ramp {said - began:4.0f} s: started {i + 1}; {self.stats.line()}")
        while self.stats.welcomed < len(self.agents):
            if time.monotonic() - began > within:
                raise TimeoutError(f"not every agent was welcomed: {self.stats.line()}")
            await asyncio.sleep(0.2)
        return time.monotonic() - began

    async def run_for(self, seconds: float, progress: Callable[[str], None] | None = print) -> None:
        began = time.monotonic()
        last = (began, self.stats.sent, self.stats.acked)
        while (left := began + seconds - time.monotonic()) > 0:
            await asyncio.sleep(min(10.0, left))
            now = time.monotonic()
            if progress:
                rate = (self.stats.sent - last[1]) / (now - last[0])
                acked = (self.stats.acked - last[2]) / (now - last[0])
                progress(
                    f"  {now - began:5.0f} s: {rate:7.0f} sent/s, {acked:7.0f} acked/s; {self.stats.line()}"
                )
            last = (now, self.stats.sent, self.stats.acked)

    async def finish(self, within: float = 40) -> None:
        """Stop sending, let acks of the last heartbeats arrive, close every connection."""
        self.stop.set()
        _done, pending = await asyncio.wait(self.tasks, timeout=within)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def unacked(self) -> int:
        return sum(len(a.unacked) for a in self.agents)

    def summary(self, window: tuple[float, float] | None = None) -> str:
        lags = self.stats.lags_sent_between(*window) if window else list(self.stats.ack_lag)
        lines = [self.stats.line(), f"unacknowledged at the end: {self.unacked()}"]
        if lags:
            lines.append(
                f"send→ack lag over {len(lags)} heartbeats: p50 {statistics.median(lags) * 1000:.0f} ms, "
                f"p99 {percentile(lags, 0.99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
            )
        return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    data = DataDir(args.data_dir)
    size = check_against_contract()
    print(f"hello and heartbeat valid per the protocol schema; a heartbeat is {size} bytes")
    print(f"open-file limit: {raise_fd_limit()}")
    shrink_client_tls_buffers()
    creds = await credentials(data, args.api, args.agents)
    swarm = Swarm.build(creds, rate=args.rate, expect_acks=not args.no_acks)
    took = await swarm.ramp_up(args.gateway, client_tls(data), args.ramp)
    print(f"{args.agents} agents welcomed in {took:.1f} s")
    start = time.time()
    await swarm.run_for(args.seconds)
    end = time.time()
    await swarm.finish()
    print(swarm.summary((start, end)))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="the core's data directory (CA, enrollment key)",
    )
    p.add_argument("--api", required=True, help="the registry's base URL (https://…)")
    p.add_argument("--gateway", required=True, help="the gateway's agent URL (wss://…/agent/ws)")
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--ramp", type=float, default=200, help="agents started per second")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="heartbeats/s per agent (default: the welcome's interval; 0 = flat out)",
    )
    p.add_argument(
        "--seconds", type=float, default=60, help="how long to run after every agent is welcomed"
    )
    p.add_argument(
        "--no-acks",
        action="store_true",
        help="do not expect acks (against the bare baseline server)",
    )
    return p


if __name__ == "__main__":
    asyncio.run(main_async(parser().parse_args()))

"""``smctl up``: everything of one machine, on one data directory, from one command.

Order: key material (first start) → the data-directory lock → the web
client (``sm-client --web`` on loopback, port + 2; it needs nothing else to
start, so it loads meanwhile) → Redis (the ``SM_REDIS_URL`` server, or a
private one) → the HTTP APIs (one process), the gateway and the background
worker → a local agent enrolled with the enrollment key (state in
``<data>/agent/``) once the API answers → wait until each answers its
readiness probe → print the keys and URLs → supervise until Ctrl-C, SIGTERM or
a child that keeps failing → stop the children, then Redis.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from sm_ctl import banner, local_agent, lock
from sm_ctl.keyring import Keys, current_keys
from sm_ctl.readiness import (
    NotReady,
    Probe,
    http_ready,
    redis_key_exists,
    redis_ready,
    tls_context,
    wait_until,
)
from sm_ctl.redis_server import PrivateRedis
from sm_ctl.supervisor import Child, ChildSpec, Supervisor, log_tail
from sm_ctl.worker import HEALTH_CHECK_KEY
from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.streams import (
    COMMANDS_CONSUMER_HEALTH_KEY,
    METRICS_INGEST_HEALTH_KEY,
    presence_key,
)

WILDCARDS = {"", "0.0.0.0", "::"}
WEB_HOST = "127.0.0.1"


@dataclass(frozen=True)
class UpOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8700
    names: tuple[str, ...] = ()
    redis_url: str | None = None
    agent: bool = True
    web: bool = True
    max_restarts: int = 5
    ready_timeout: float = 60.0
    grace: float = 10.0


@dataclass(frozen=True)
class Endpoints:
    """Where the core answers: as others should address it, and as ``up`` probes it."""

    api: str
    gateway: str
    api_probe: str
    gateway_probe: str
    # The web client: always on loopback (it holds no credentials of its own, but
    # serves the app that asks for them).
    web: str = ""


def _url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def endpoints(options: UpOptions) -> Endpoints:
    """Listening on every address, the core is advertised by its first name or host name."""
    if options.host in WILDCARDS:
        advertised = options.names[0] if options.names else socket.gethostname()
        local = "::1" if options.host == "::" else "127.0.0.1"
    else:
        advertised = local = options.host
    public, probe = _url_host(advertised), _url_host(local)
    gateway_port = options.port + 1
    return Endpoints(
        api=f"https://{public}:{options.port}",
        gateway=f"wss://{public}:{gateway_port}/agent/ws",
        api_probe=f"https://{probe}:{options.port}/readyz",
        gateway_probe=f"https://{probe}:{gateway_port}/readyz",
        web=f"http://{WEB_HOST}:{options.port + 2}",
    )


@dataclass
class Started:
    """What ``up`` reports once everything is ready."""

    keys: Keys
    endpoints: Endpoints
    data: DataDir
    redis_url: str
    private_redis: bool
    first_start: bool
    seconds: float
    children: dict[str, int] = field(default_factory=dict)
    # (label, text) lines for the banner (the local agent).
    notes: list[tuple[str, str]] = field(default_factory=list)
    # The web client's URL, or why it is not running ("" without it).
    web: str = ""


class UpFailed(RuntimeError):
    """``up`` could not start, or a child kept failing; the message says which and why."""


Report = Callable[[Started], None]
Notify = Callable[[str], None]


def _smctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "sm_ctl", *args]


class Launch:
    """One run of ``up``: its children, their probes, and what it reports."""

    def __init__(
        self, options: UpOptions, supervisor: Supervisor, stop: asyncio.Event, began: float
    ) -> None:
        self.options = options
        self.supervisor = supervisor
        self.stop = stop
        self.began = began
        self.data = DataDir(options.data_dir)
        self.where = endpoints(options)
        self.logs = self.data.root / "logs"
        self.redis_url = options.redis_url or ""

    @staticmethod
    def _alive(child: Child) -> Callable[[], bool]:
        """Whether the process ``child`` runs now is still running.

        A restart in between (the supervisor's) counts as a death: a probe
        that is slow to fail must not hide it.
        """
        first = child.process

        def alive() -> bool:
            return child.process is first and first is not None and first.returncode is None

        return alive

    async def _ready(self, child: Child | None, name: str, probe: Probe) -> None:
        """Wait for ``probe``; UpFailed (with the child's log) when it never succeeds."""
        alive = self._alive(child) if child is not None else (lambda: True)
        try:
            await wait_until(name, probe, within=self.options.ready_timeout, alive=alive)
        except NotReady as exc:
            if child is None:
                raise UpFailed(str(exc)) from exc
            tail = log_tail(child.spec.log)
            raise UpFailed(f"{exc}\nIts log ({child.spec.log}) ends with:\n{tail}") from exc

    async def start_redis(self) -> bool:
        """The configured Redis, or a private one; False when stopped meanwhile."""
        child = None
        if not self.redis_url:
            plan = PrivateRedis.plan(self.data.redis_dir, self.logs / "redis.log")
            plan.prepare()
            self.redis_url = plan.url
            spec = ChildSpec("redis", plan.argv(), dict(os.environ), plan.logfile, stop_last=True)
            child = await self.supervisor.start(spec)
        ready = self._ready(child, "Redis", redis_ready(self.redis_url))
        if not await until_stopped(ready, self.stop):
            return False
        await _forget_health_keys(self.redis_url)
        return True

    def _child_env(self) -> dict[str, str]:
        # The local agent takes its settings from its own file, never from ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SM_AGENT_")}
        env.update(
            {
                "SM_DATA_DIR": str(self.data.root),
                "SM_REDIS_URL": self.redis_url,
                "SM_GATEWAY_URL": self.where.gateway,
                "SM_REGISTRY_URL": self.where.api,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def service_specs(self) -> list[ChildSpec]:
        """The API, gateway, metrics ingest, commands consumer and worker processes."""
        env = self._child_env()
        options = self.options
        common = ("--data-dir", str(self.data.root), "--host", options.host)
        return [
            ChildSpec(
                "api",
                _smctl("serve", "api", *common, "--port", str(options.port)),
                env,
                self.logs / "api.log",
            ),
            ChildSpec(
                "gateway",
                _smctl("serve", "gateway", *common, "--port", str(options.port + 1)),
                env,
                self.logs / "gateway.log",
            ),
            ChildSpec(
                "metrics-ingest",
                _smctl("serve", "metrics-ingest", "--data-dir", str(self.data.root)),
                env,
                self.logs / "metrics-ingest.log",
            ),
            ChildSpec(
                "commands-consumer",
                _smctl("serve", "commands-consumer", "--data-dir", str(self.data.root)),
                env,
                self.logs / "commands-consumer.log",
            ),
            ChildSpec(
                "worker",
                _smctl("serve", "worker", "--data-dir", str(self.data.root)),
                env,
                self.logs / "worker.log",
            ),
        ]

    def _probe(self, name: str, tls: ssl.SSLContext) -> Probe:
        if name == "api":
            return http_ready(self.where.api_probe, tls)
        if name == "gateway":
            return http_ready(self.where.gateway_probe, tls)
        if name == "metrics-ingest":
            return redis_key_exists(self.redis_url, METRICS_INGEST_HEALTH_KEY)
        if name == "commands-consumer":
            return redis_key_exists(self.redis_url, COMMANDS_CONSUMER_HEALTH_KEY)
        return redis_key_exists(self.redis_url, HEALTH_CHECK_KEY)

    async def start_services(self) -> bool:
        tls = tls_context(self.data.ca_cert)
        waits = []
        for spec in self.service_specs():
            child = await self.supervisor.start(spec)
            waits.append(
                self._ready(child, f"the {spec.name} process", self._probe(spec.name, tls))
            )
        return await until_stopped(all_of(waits), self.stop)

    async def start_agent(self) -> str | None:
        """Enroll and run the local agent; the banner line about it, None when stopped meanwhile.

        The agent is not essential: when it cannot enroll or connect (its node
        was deleted, say), the core runs on and the banner says why.
        """
        config = local_agent.write_config(self.data, self.where.api, self.where.gateway)
        spec = ChildSpec(
            "agent",
            [sys.executable, "-m", "sm_agent", "run", "--config", str(config)],
            self._child_env(),
            self.logs / "agent.log",
            essential=False,
        )
        child = await self.supervisor.start(spec)

        async def enrolled() -> bool:
            return local_agent.enrolled(self.data)

        async def online() -> bool:
            probe = redis_key_exists(self.redis_url, presence_key(local_agent.node_id(self.data)))
            return await probe()

        try:
            for condition in (enrolled, online):
                ready = self._ready(child, "the local agent", condition)
                if not await until_stopped(ready, self.stop):
                    return None
        except UpFailed as exc:
            first_line = str(exc).splitlines()[0]
            return f"not running: {first_line} (log: {spec.log})"
        node_id = local_agent.node_id(self.data)
        return f"node {node_id} online (state in {local_agent.agent_dir(self.data)})"

    def web_spec(self) -> ChildSpec:
        """``sm-client --web`` on loopback, port + 2, its connect screen set to this core."""
        env = self._child_env()
        env["FLET_FORCE_WEB_SERVER"] = "1"  # serve only, never open a browser
        port = str(self.options.port + 2)
        argv = [sys.executable, "-m", "sm_client.main", "--web", "--host", WEB_HOST]
        return ChildSpec(
            "web",
            [*argv, "--port", port, "--server", self.where.api],
            env,
            self.logs / "web.log",
            essential=False,
        )

    async def start_web(self) -> asyncio.Future[None]:
        """Start the web client; the future of its readiness (awaited before the banner)."""
        child = await self.supervisor.start(self.web_spec())
        probe = http_ready(self.where.web + "/", None)
        return asyncio.ensure_future(self._ready(child, "the web client", probe))

    async def web_outcome(self, ready: asyncio.Future[None]) -> str | None:
        """The web client's URL, or why it is not running; None when stopped meanwhile.

        It is not essential: the core runs on without it, and the banner says why.
        """
        try:
            if not await until_stopped(asyncio.shield(ready), self.stop):
                return None
        except UpFailed as exc:
            return f"not running: {str(exc).splitlines()[0]} (log: {self.logs / 'web.log'})"
        return self.where.web

    async def run(self, report: Report, first_start: bool) -> None:
        web = await self.start_web() if self.options.web else None
        try:
            await self._run(report, first_start, web)
        finally:
            if web is not None:
                web.cancel()
                await asyncio.gather(web, return_exceptions=True)

    async def _run(
        self, report: Report, first_start: bool, web: asyncio.Future[None] | None
    ) -> None:
        if not await self.start_redis() or not await self.start_services():
            return
        notes: list[tuple[str, str]] = []
        if self.options.agent:
            agent = await self.start_agent()
            if agent is None:
                return
            notes.append((banner.AGENT, agent))
            notes.append((banner.AGENT_CONTROL, local_agent.CONTROL_NOTE))
        web_note = ""
        if web is not None:
            outcome = await self.web_outcome(web)
            if outcome is None:
                return
            web_note = outcome
        report(
            Started(
                keys=current_keys(self.data),
                endpoints=self.where,
                data=self.data,
                redis_url=self.redis_url,
                private_redis=self.options.redis_url is None,
                first_start=first_start,
                seconds=time.monotonic() - self.began,
                children={n: c.pid or 0 for n, c in self.supervisor.children.items()},
                notes=notes,
                web=web_note,
            )
        )
        failure = await self.supervisor.run(self.stop)
        if failure is not None:
            raise UpFailed(failure)


async def run_up(options: UpOptions, report: Report, notify: Notify) -> None:
    """Run the core until Ctrl-C/SIGTERM; raises UpFailed when it cannot start or keep running."""
    began = time.monotonic()
    data = DataDir(options.data_dir)
    first_start = initialize(data, options.names)
    try:
        held = lock.claim(data.root)
    except lock.DataDirInUse as exc:
        raise UpFailed(str(exc)) from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    supervisor = Supervisor(max_restarts=options.max_restarts, grace=options.grace, notify=notify)
    try:
        await Launch(options, supervisor, stop, began).run(report, first_start)
    finally:
        await supervisor.stop()
        for signum in signals:
            loop.remove_signal_handler(signum)
        held.close()


async def until_stopped(awaitable: Awaitable[None], stop: asyncio.Event) -> bool:
    """Await ``awaitable`` unless ``stop`` is set first; True when it completed."""
    work = asyncio.ensure_future(awaitable)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if work in done:
        stopper.cancel()
        work.result()
        return True
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    return False


async def all_of(waits: Sequence[Awaitable[None]]) -> None:
    """Await all; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _forget_health_keys(redis_url: str) -> None:
    """A worker or ingest killed earlier may have left its health key; readiness must see a fresh one."""
    client = Redis.from_url(redis_url)
    try:
        await client.delete(
            HEALTH_CHECK_KEY, METRICS_INGEST_HEALTH_KEY, COMMANDS_CONSUMER_HEALTH_KEY
        )
    finally:
        await client.aclose()

"""Child processes of ``up``: started, watched, restarted with backoff, stopped in order.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only
``up``, which then stops the children in order (services first, Redis last).
On Linux each child also asks the kernel to send it SIGTERM when ``up``
dies, so a killed ``up`` leaves nothing behind.

A child that exits on its own is restarted after a backoff that doubles each
time (1 s, 2 s, 4 s …); one that keeps failing (``max_restarts`` exits, each
within ``stable_after`` seconds of its start) stops the whole, and
:meth:`Supervisor.run` returns a message naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
LOG_TAIL_LINES = 15


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM when the parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child.

    ``stop_last`` children (Redis) stop after all others. A child that is not
    ``essential`` (the local agent) is left stopped when it keeps failing,
    instead of stopping everything.
    """

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    stop_last: bool = False
    essential: bool = True


@dataclass
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    failures: int = 0
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


Notify = Callable[[str], None]


class Supervisor:
    """Starts children, restarts those that exit, and stops them all on request."""

    def __init__(
        self,
        *,
        max_restarts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        stable_after: float = 60.0,
        grace: float = 10.0,
        notify: Notify = lambda message: None,
    ) -> None:
        self.max_restarts = max_restarts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.grace = grace
        self.notify = notify
        self.children: dict[str, Child] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._failure: asyncio.Future[str] | None = None

    async def start(self, spec: ChildSpec) -> Child:
        """Start ``spec`` now and watch it from then on."""
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        child = Child(spec)
        self.children[spec.name] = child
        await self._spawn(child)
        self._watchers[spec.name] = asyncio.create_task(self._watch(child))
        return child

    async def _spawn(self, child: Child) -> None:
        spec = child.spec
        spec.log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(spec.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            child.process = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=spec.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            os.close(fd)
        child.started_at = time.monotonic()

    async def _watch(self, child: Child) -> None:
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self.is_stopping():
                return
            ran = time.monotonic() - child.started_at
            child.failures = 1 if ran >= self.stable_after else child.failures + 1
            if child.failures > self.max_restarts and not child.spec.essential:
                self.notify(
                    f"{child.spec.name} exited with {describe_exit(code)} and was restarted "
                    f"{child.restarts} times; leaving it stopped (log: {child.spec.log})"
                )
                return
            if child.failures > self.max_restarts:
                self._fail(
                    f"{child.spec.name} exited with {describe_exit(code)} and was restarted "
                    f"{child.restarts} times; stopping everything. "
                    f"Its log ({child.spec.log}) ends with:\n{log_tail(child.spec.log)}"
                )
                return
            delay = min(self.max_backoff, self.backoff * 2 ** (child.failures - 1))
            self.notify(
                f"{child.spec.name} exited with {describe_exit(code)}; restarting in {delay:g} s "
                f"(log: {child.spec.log})"
            )
            await asyncio.sleep(delay)
            if self.is_stopping():
                return
            try:
                await self._spawn(child)
            except OSError as exc:
                self._fail(f"{child.spec.name} could not be restarted: {exc}")
                return
            child.restarts += 1

    def is_stopping(self) -> bool:
        return self._stopping

    def _fail(self, message: str) -> None:
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(message)

    async def run(self, stop: asyncio.Event) -> str | None:
        """Supervise until ``stop`` is set (None) or a child gives up (its message)."""
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        stopper = asyncio.create_task(stop.wait())
        waiters: set[asyncio.Future[Any]] = {stopper, self._failure}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        return self._failure.result() if self._failure.done() else None

    async def stop(self) -> None:
        """SIGTERM every child (``stop_last`` ones after the rest); SIGKILL after ``grace``."""
        self._stopping = True
        for watcher in self._watchers.values():
            watcher.cancel()
        first = [c for c in self.children.values() if not c.spec.stop_last]
        last = [c for c in self.children.values() if c.spec.stop_last]
        await asyncio.gather(*(self._stop_child(c) for c in first))
        await asyncio.gather(*(self._stop_child(c) for c in last))

    async def _stop_child(self, child: Child) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.grace)
        except TimeoutError:
            self.notify(f"{child.spec.name} did not stop within {self.grace:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"

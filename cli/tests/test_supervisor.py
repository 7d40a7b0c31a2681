"""The supervisor with real child processes: restarts, giving up, ordered and forced stops."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sm_ctl.supervisor import ChildSpec, Supervisor, describe_exit

SLEEPER = "import time\nwhile True: time.sleep(1)"
# Ignores SIGTERM: only SIGKILL stops it.
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\nwhile True: time.sleep(1)"


def _spec(tmp_path: Path, name: str, code: str, **kwargs: bool) -> ChildSpec:
    return ChildSpec(
        name, [sys.executable, "-c", code], dict(os.environ), tmp_path / f"{name}.log", **kwargs
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state in /proc says it is dead.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ")[1][0] != "Z"


async def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll ``condition``: what it watches (processes, files) has no event to wait on."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_killed_child_is_restarted(tmp_path: Path) -> None:
    notes: list[str] = []
    supervisor = Supervisor(backoff=0.05, notify=notes.append)
    child = await supervisor.start(_spec(tmp_path, "api", SLEEPER))
    first = child.pid
    assert first is not None
    try:
        os.kill(first, signal.SIGKILL)
        await _wait_for(lambda: child.pid != first and child.restarts == 1)
        assert child.pid is not None
        assert _alive(child.pid)
        assert notes
        assert notes[0].startswith("api exited with signal SIGKILL; restarting in")
    finally:
        await supervisor.stop()
    assert child.pid is not None
    assert not _alive(child.pid)


async def test_a_child_that_keeps_failing_stops_everything(tmp_path: Path) -> None:
    supervisor = Supervisor(max_restarts=2, backoff=0.01)
    other = await supervisor.start(_spec(tmp_path, "worker", SLEEPER))
    failing = await supervisor.start(
        _spec(tmp_path, "gateway", "import sys; print('port 8701 in use'); sys.exit(3)")
    )
    try:
        async with asyncio.timeout(10):
            failure = await supervisor.run(asyncio.Event())
    finally:
        await supervisor.stop()
    assert failure is not None
    assert failure.startswith("gateway exited with code 3 and was restarted 2 times")
    assert "port 8701 in use" in failure  # the end of its log
    assert failing.restarts == 2
    assert other.pid is not None
    assert not _alive(other.pid)


async def test_a_non_essential_child_is_left_stopped(tmp_path: Path) -> None:
    notes: list[str] = []
    supervisor = Supervisor(max_restarts=1, backoff=0.01, notify=notes.append)
    agent = await supervisor.start(
        _spec(tmp_path, "agent", "import sys; sys.exit(3)", essential=False)
    )
    stop = asyncio.Event()
    try:
        await _wait_for(lambda: any("leaving it stopped" in n for n in notes))
        assert agent.restarts == 1
        asyncio.get_running_loop().call_later(0.05, stop.set)
        assert await supervisor.run(stop) is None  # the whole keeps running until stopped
    finally:
        await supervisor.stop()


async def test_stop_last_children_outlive_the_others(tmp_path: Path) -> None:
    order = tmp_path / "order"
    record = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        f"    open({str(order)!r}, 'a').write(sys.argv[1] + '\\n'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "while True: time.sleep(0.1)\n"
    )

    def spec(name: str, **kwargs: bool) -> ChildSpec:
        return ChildSpec(
            name,
            [sys.executable, "-c", record, name],
            dict(os.environ),
            tmp_path / f"{name}.log",
            **kwargs,
        )

    supervisor = Supervisor()
    await supervisor.start(spec("redis", stop_last=True))
    await supervisor.start(spec("api"))
    await asyncio.sleep(0.5)  # let both install their handlers
    await supervisor.stop()
    assert order.read_text().split() == ["api", "redis"]


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    notes: list[str] = []
    supervisor = Supervisor(grace=0.5, notify=notes.append)
    child = await supervisor.start(_spec(tmp_path, "stubborn", STUBBORN))
    log = tmp_path / "stubborn.log"
    await _wait_for(lambda: log.exists() and "ready" in log.read_text())
    await supervisor.stop()
    assert child.process is not None
    assert child.process.returncode == -signal.SIGKILL
    assert notes == ["stubborn did not stop within 0.5 s; killing it"]


async def test_children_run_in_their_own_session(tmp_path: Path) -> None:
    supervisor = Supervisor()
    child = await supervisor.start(_spec(tmp_path, "api", SLEEPER))
    try:
        assert child.pid is not None
        # A Ctrl-C in the terminal goes to up's process group only.
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        await supervisor.stop()


def test_exit_descriptions() -> None:
    assert describe_exit(0) == "code 0"
    assert describe_exit(2) == "code 2"
    assert describe_exit(-signal.SIGTERM) == "signal SIGTERM"

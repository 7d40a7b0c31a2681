"""Running an accepted order: a process in its own group, or a file tail.

A process starts in a new session (its own process group), stdin from
``/dev/null``, stdout and stderr read as they are produced. The run ends when
the process has exited and its output is closed, or when the order's timeout
passes or a ``cancel`` arrives: then SIGTERM goes to the whole group and,
after ``kill_grace`` seconds, SIGKILL (so a child that ignores SIGTERM dies
too). Whatever is left of the group when the run ends is killed.

Output: each stream is digested in full (SHA-256, byte count); the first
``max_output_bytes`` are kept and handed on in chunks of at most 16 KiB as
they arrive, the rest only counted (``truncated``).

A file tail reads the last N lines from the end of the file (block by block,
never the whole file) and, when following, polls for appended bytes, starting
over when the file is truncated and reopening it when it is replaced
(rotation), until the timeout or a cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import signal
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

CHUNK = 16 * 1024
READ_BLOCK = 64 * 1024
FOLLOW_POLL = 0.2
# After SIGKILL, how long to wait for the output to close (a process that left
# the group could hold it open for ever).
AFTER_KILL = 2.0

Sink = Callable[[str, int, bytes], None]


class Capture:
    """One output stream: digested in full, kept up to ``limit``, passed on in chunks."""

    def __init__(self, name: str, limit: int, sink: Sink) -> None:
        self.name = name
        self._limit = limit
        self._sink = sink
        self._sha = hashlib.sha256()
        self.total = 0
        self.kept = 0
        self.truncated = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.total += len(data)
        self._sha.update(data)
        room = self._limit - self.kept
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            self._sink(self.name, self.kept, chunk)
            self.kept += len(chunk)

    def summary(self) -> dict[str, Any]:
        return {"bytes": self.total, "sha256": self._sha.hexdigest(), "truncated": self.truncated}


@dataclass
class Outcome:
    status: str
    exit_code: int | None
    started_at: float
    ended_at: float
    signal: int | None = None
    error: str | None = None


class Stop:
    """Why a run should end early: set by a cancel (or the agent stopping)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.status = "cancelled"
        self.error: str | None = None

    def set(self, status: str = "cancelled", error: str | None = None) -> None:
        if not self.event.is_set():
            self.status, self.error = status, error
            self.event.set()


class UserError(Exception):
    pass


def user_switch(name: str | None, env: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments for the subprocess to run as ``name`` (and its HOME etc. in ``env``)."""
    if name is None:
        return {}
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UserError(f"there is no user {name!r} on this node") from None
    if entry.pw_uid == os.geteuid():
        return {}
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        raise UserError(
            f"cannot run as {name}: the agent runs as {me} and may not switch users "
            "(running as another user needs an agent started as root)"
        )
    env.update(HOME=entry.pw_dir, USER=name, LOGNAME=name, SHELL=entry.pw_shell or "/bin/sh")
    groups = [g for g in os.getgrouplist(name, entry.pw_gid) if g != entry.pw_gid]
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": groups}


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _pump(stream: asyncio.StreamReader | None, capture: Capture) -> None:
    if stream is None:
        return
    while True:
        data = await stream.read(CHUNK)
        if not data:
            return
        capture.feed(data)


async def run_process(
    argv: tuple[str, ...],
    *,
    env: dict[str, str],
    cwd: str,
    user: str | None,
    timeout: float,  # noqa: ASYNC109 (the order's own bound, applied to several waits)
    kill_grace: float,
    stop: Stop,
    stdout: Capture,
    stderr: Capture,
    on_start: Callable[[int, float], None],
) -> Outcome:
    started_at = time.time()
    try:
        switch = user_switch(user, env)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            limit=CHUNK * 4,
            **switch,
        )
    except UserError as exc:
        return Outcome("failed", None, started_at, time.time(), error=str(exc))
    except OSError as exc:
        what = exc.strerror or str(exc)
        where = exc.filename or argv[0]
        return Outcome(
            "failed", None, started_at, time.time(), error=f"cannot start: {where}: {what}"
        )
    started_at = time.time()
    on_start(process.pid, started_at)
    pgid = process.pid
    ran: asyncio.Future[Any] = asyncio.ensure_future(
        asyncio.gather(_pump(process.stdout, stdout), _pump(process.stderr, stderr), process.wait())
    )
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.event.wait())
    status: str | None = None
    error: str | None = None
    try:
        done, _ = await asyncio.wait(
            {ran, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if ran not in done:
            if stopping in done:
                status, error = stop.status, stop.error
            else:
                status = "timed_out"
            _kill_group(pgid, signal.SIGTERM)
            finished, _ = await asyncio.wait({ran}, timeout=kill_grace)
            if not finished:
                _kill_group(pgid, signal.SIGKILL)
                await asyncio.wait({ran}, timeout=AFTER_KILL)
    finally:
        stopping.cancel()
        _kill_group(pgid, signal.SIGKILL)  # what is left of the group
        if not ran.done():
            ran.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ran
        if process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), AFTER_KILL)
    ended_at = time.time()
    code = process.returncode
    exit_code = code if code is not None and code >= 0 else None
    signum = -code if code is not None and code < 0 else None
    if status is None:
        status = "succeeded" if code == 0 else "failed"
    return Outcome(status, exit_code, started_at, ended_at, signal=signum, error=error)


# ------------------------------------------------------------ file tails


def tail_start(fd: int, size: int, lines: int) -> int:
    """The offset where the last ``lines`` lines of the file open at ``fd`` begin."""
    if lines == 0 or size == 0:
        return size
    position = size
    # A last line without a newline counts as a line; a final newline ends the last line.
    needed = lines + 1 if os.pread(fd, 1, size - 1) == b"\n" else lines
    found = 0
    while position > 0:
        start = max(0, position - READ_BLOCK)
        block = os.pread(fd, position - start, start)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            found += 1
            if found == needed:
                return start + index + 1
        position = start
    return 0


async def _copy(fd: int, start: int, end: int, capture: Capture) -> int:
    position = start
    while position < end:
        block = os.pread(fd, min(READ_BLOCK, end - position), position)
        if not block:
            break
        capture.feed(block)
        position += len(block)
        await asyncio.sleep(0)
    return position


def _open_regular(path: str) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a regular file")
    return fd


async def tail_file(
    path: str,
    *,
    lines: int,
    follow: bool,
    timeout: float,  # noqa: ASYNC109 (the order's own bound, applied to several waits)
    stop: Stop,
    stdout: Capture,
    reopen: Callable[[], str],
    on_start: Callable[[float], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Outcome:
    """The last ``lines`` lines of ``path`` (real, already checked), and what follows when following.

    ``reopen`` resolves and checks the path again after a rotation (raising to stop following).
    """
    started_at = time.time()
    try:
        fd = _open_regular(path)
    except OSError as exc:
        why = exc.strerror or str(exc)
        return Outcome("failed", None, started_at, time.time(), error=f"cannot read {path}: {why}")
    on_start(started_at)
    deadline = asyncio.get_running_loop().time() + timeout
    status = "succeeded"
    error: str | None = None
    try:
        size = os.fstat(fd).st_size
        position = await _copy(fd, tail_start(fd, size, lines), size, stdout)
        while follow:
            if stop.event.is_set():
                status, error = stop.status, stop.error
                break
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                status = "timed_out"
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.event.wait(), min(FOLLOW_POLL, left))
            size = os.fstat(fd).st_size
            if size < position:  # truncated: start over
                position = 0
            position = await _copy(fd, position, size, stdout)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue  # rotated away, not recreated yet: keep reading the old file
            held = os.fstat(fd)
            if (current.st_ino, current.st_dev) != (held.st_ino, held.st_dev):
                # Rotated: what was left in the old file, then the new one from its start.
                position = await _copy(fd, position, held.st_size, stdout)
                try:
                    path = reopen()
                    new_fd = _open_regular(path)
                except OSError:
                    continue
                os.close(fd)
                fd, position = new_fd, 0
    except OSError as exc:
        status, error = "failed", f"reading {path}: {exc.strerror or exc}"
    finally:
        os.close(fd)
    exit_code = 0 if status == "succeeded" else None
    return Outcome(status, exit_code, started_at, time.time(), error=error)

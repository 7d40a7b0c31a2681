"""A core started with ``smctl up`` as a child process, read through its banner.

For programs that need a whole running core: the end-to-end tests, the
benchmarks (``up`` start time), scripts. ``start`` execs ``python -m sm_ctl
up``; ``wait_ready`` reads its output until the banner is complete;
``stop`` sends SIGTERM and waits for the exit status.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sm_ctl import banner
from sm_shared.datadir import DataDir


def free_port_pair() -> int:
    """A port P with P + 1 and P + 2 free too (``up`` puts the gateway on the next
    port, the web client on the one after).

    Drawn below Linux's ephemeral range (32768-60999), so outgoing connections
    of other programs cannot take it between this check and ``up``'s bind.
    """
    for _ in range(200):
        port = random.randrange(20_000, 32_000)  # noqa: S311 (a port, not a secret)
        try:
            for candidate in (port, port + 1, port + 2):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no three consecutive free ports below 32000")


class UpExited(RuntimeError):
    """``up`` ended (or timed out) before what was awaited; carries its output."""


class UpProcess:
    """One ``smctl up`` child process and the lines it has printed so far."""

    def __init__(self, process: subprocess.Popen[str], data: DataDir, began: float) -> None:
        self.process = process
        self.data = data
        self.began = began
        self.lines: list[str] = []
        # Seconds from exec to the ready line, once ``wait_ready`` saw it.
        self.ready_after: float | None = None
        self._queue: queue.Queue[str] = queue.Queue()
        stdout = process.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                self._queue.put(line)

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()

    @classmethod
    def start(
        cls,
        data_dir: Path,
        port: int,
        *args: str,
        env: Mapping[str, str] | None = None,
    ) -> UpProcess:
        """Exec ``smctl up`` on ``data_dir``; ``SM_`` variables of this process are not passed on."""
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
        child_env.update(env or {})
        argv = [sys.executable, "-m", "sm_ctl", "up", "--data-dir", str(data_dir)]
        began = time.monotonic()
        process = subprocess.Popen(
            [*argv, "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=child_env,
        )
        return cls(process, DataDir(data_dir), began)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def read_until(self, predicate: Callable[[str], bool], within: float) -> str:
        """The first new line for which ``predicate`` holds; UpExited if none comes."""
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpExited(f"timed out after {within:g} s; output so far:\n{self.output}")
            try:
                line = self._queue.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise UpExited(f"smctl up exited:\n{self.output}") from None
                continue
            self.lines.append(line)
            if predicate(line):
                return line

    def wait_ready(self, within: float = 60.0) -> banner.Banner:
        """The banner, once ``up`` says it is ready; also sets ``ready_after`` (since exec)."""
        self.read_until(lambda line: line.startswith(banner.READY), within)
        self.ready_after = time.monotonic() - self.began
        return banner.parse(self.lines)

    def stop(self, signum: int = signal.SIGTERM, within: float = 30.0) -> int:
        """Signal ``up`` (if running) and wait for it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(within)

    def wait(self, within: float = 60.0) -> int:
        """Wait for ``up`` to exit by itself (killing it after ``within``); its exit status."""
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            self._reader.join(5)
            while not self._queue.empty():
                self.lines.append(self._queue.get_nowait())
            if self.process.stdout is not None:
                self.process.stdout.close()

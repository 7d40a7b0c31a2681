"""The private Redis ``up`` runs when ``SM_REDIS_URL`` is not set.

Debian's ``redis-server`` on a unix socket in the data directory's ``redis/``
(a free loopback port when the socket path is too long for the platform),
append-only file with ``everysec`` fsync, ``noeviction``, no RDB snapshots
(the AOF is the durable copy).
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

# sockaddr_un.sun_path is 108 bytes on Linux (104 on the BSDs), NUL included.
MAX_SOCKET_PATH = 100


class RedisServerMissing(RuntimeError):
    """``redis-server`` is not installed."""


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisServerMissing(
            "redis-server is not installed: install the Debian package `redis-server` "
            "(`apt-get install redis-server`; ./sm up does it for you), "
            "or point SM_REDIS_URL at a Redis server"
        )
    return binary


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class PrivateRedis:
    """How to run the private Redis of one data directory, and its URL."""

    workdir: Path
    logfile: Path
    socket_path: Path | None
    port: int

    @classmethod
    def plan(cls, workdir: Path, logfile: Path) -> PrivateRedis:
        socket_path = workdir / "redis.sock"
        if len(str(socket_path).encode()) <= MAX_SOCKET_PATH:
            return cls(workdir, logfile, socket_path, 0)
        return cls(workdir, logfile, None, free_loopback_port())

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix://{self.socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        args = [
            redis_binary(),
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.logfile),
            "--daemonize",
            "no",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--protected-mode",
            "yes",
        ]
        if self.socket_path is not None:
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
        else:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        return args

    def prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.logfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

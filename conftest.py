"""Fixtures every test package shares: a real Redis server and a real data directory.

Redis: Debian's ``redis-server`` on a free loopback port for the whole session
(nothing kept on disk); each test gets database 0 emptied before it runs.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the test session; yields its base URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run the README's test command (./sm test)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """Database 0 of the session's Redis, emptied for this test."""
    url = f"{redis_server}/0"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    """A fresh data directory with a first start's key material."""
    data = DataDir(tmp_path / "data")
    initialize(data)
    return data

"""Fixtures every test package shares: a real Redis server, a real data directory, a registry.

Redis: Debian's ``redis-server`` on a free loopback port for the whole session
(nothing kept on disk); each test gets database 0 emptied before it runs.
Every test package imports this file: heavy imports (uvicorn, the registry)
stay inside the fixtures that need them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
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
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--maxmemory-policy",
            "noeviction",
        ],
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


@pytest.fixture
def registry_gateway_url() -> str:
    """The gateway URL ``registry_origin`` gives enrolling agents (override where a gateway runs)."""
    return "wss://127.0.0.1:8104/agent/ws"


@pytest.fixture
def registry_origin(data_dir: DataDir, redis_url: str, registry_gateway_url: str) -> Iterator[str]:
    """``https://127.0.0.1:<port>`` of a real registry serving the test's data directory and Redis.

    uvicorn runs it in a thread of its own (its handlers block on SQLite), with
    the data directory's server certificate.
    """
    import uvicorn

    from sm_registry import RegistrySettings, create_app

    port = free_port()
    settings = RegistrySettings(
        data_dir=data_dir.root,
        redis_url=redis_url,
        validate_responses=True,
        gateway_url=registry_gateway_url,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(data_dir.server_cert),
            ssl_keyfile=str(data_dir.server_key),
            log_level="warning",
            lifespan="on",  # a failing startup stops the server instead of being skipped
        )
    )
    thread = threading.Thread(target=server.run, name="registry", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the registry did not start")
        time.sleep(0.02)
    yield f"https://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)

"""A real registry (uvicorn, TLS from the data directory) for the agent's enrollment tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from sm_registry import RegistrySettings, create_app
from sm_shared.datadir import DataDir


@pytest.fixture
def registry_origin(data_dir: DataDir, redis_url: str) -> Iterator[str]:
    """``https://127.0.0.1:<port>`` of a registry serving the test's data directory."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = RegistrySettings(
        data_dir=data_dir.root,
        redis_url=redis_url,
        validate_responses=True,
        gateway_url="wss://127.0.0.1:8104/agent/ws",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            ssl_certfile=str(data_dir.server_cert),
            ssl_keyfile=str(data_dir.server_key),
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, name="registry", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the registry did not start"
        assert time.monotonic() < deadline, "the registry did not start in time"
        time.sleep(0.02)
    yield f"https://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(20)

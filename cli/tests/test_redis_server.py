"""The private Redis of ``up``: unix socket (or loopback port), AOF everysec, noeviction."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sm_ctl.redis_server import MAX_SOCKET_PATH, PrivateRedis


def _run(plan: PrivateRedis) -> Iterator[redis.Redis]:
    plan.prepare()
    proc = subprocess.Popen(plan.argv(), stdout=subprocess.DEVNULL)
    client = redis.Redis.from_url(plan.url, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, plan.logfile.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.02)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def _config(client: redis.Redis, key: str) -> str:
    value: dict[str, str] = client.config_get(key)  # type: ignore[assignment]
    return value[key]


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("r")


def test_unix_socket_with_aof_and_noeviction(short_tmp: Path) -> None:
    plan = PrivateRedis.plan(short_tmp / "redis", short_tmp / "logs" / "redis.log")
    assert plan.socket_path == short_tmp / "redis" / "redis.sock"
    assert plan.url == f"unix://{plan.socket_path}?db=0"
    for client in _run(plan):
        config = {
            key: _config(client, key)
            for key in ("appendonly", "appendfsync", "maxmemory-policy", "port", "save")
        }
        assert config == {
            "appendonly": "yes",
            "appendfsync": "everysec",
            "maxmemory-policy": "noeviction",
            "port": "0",  # no TCP listener at all
            "save": "",
        }
        client.set("k", "v")
    assert (short_tmp / "redis" / "appendonlydir").is_dir()
    assert plan.logfile.exists()


def test_a_long_path_falls_back_to_a_loopback_port(short_tmp: Path) -> None:
    deep = short_tmp / ("d" * (MAX_SOCKET_PATH - len(str(short_tmp))))
    plan = PrivateRedis.plan(deep / "redis", short_tmp / "redis.log")
    assert plan.socket_path is None
    assert plan.url == f"redis://127.0.0.1:{plan.port}/0"
    for client in _run(plan):
        assert _config(client, "bind") == "127.0.0.1"
        assert client.ping()

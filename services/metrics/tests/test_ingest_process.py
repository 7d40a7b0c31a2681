"""The real ingest process (``smctl serve metrics-ingest``) killed with SIGKILL mid-stream
and restarted: every heartbeat is committed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import Engine, func, select

from sm_metrics.schema import samples
from sm_metrics.settings import MetricsSettings
from sm_shared.streams import METRICS_GROUP, METRICS_INGEST_HEALTH_KEY, METRICS_STREAM

NODES = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(10)]
PER_NODE = 1500


def start(settings: MetricsSettings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SM_DATA_DIR": str(settings.data_dir),
        "SM_REDIS_URL": settings.redis_url,
        "SM_METRICS_CONSUMER": "ingest-under-test",
        # Small batches: many commits, so the kill lands between two of them.
        "SM_METRICS_BATCH": "200",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sm_ctl", "serve", "metrics-ingest"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(samples)).scalar_one())


def wait_for(condition: Callable[[], bool], what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}; the ingest's log:\n{log.read_text()[-3000:]}")
        time.sleep(0.01)


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_commits_everything_exactly_once(
    settings: MetricsSettings,
    engine: Engine,
    redis_client: Redis,
    make_heartbeat: Callable[..., dict[str, Any]],
    append: Callable[..., list[bytes]],
    tmp_path: Path,
) -> None:
    now = time.time()
    template = [
        make_heartbeat(seq=i, sent_at=now - 3000 + i, cpu=float(i % 100)) for i in range(PER_NODE)
    ]
    for node_id in NODES:
        append(node_id, template, now)
    # Re-sent heartbeats (an agent's unacknowledged tail after a reconnect) are in the stream too.
    append(NODES[0], template[-100:], now + 1)
    total = len(NODES) * PER_NODE
    log = tmp_path / "ingest.log"

    first = start(settings, log)
    try:
        wait_for(lambda: stored(engine) >= total // 4, "the ingest stored nothing", log)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = stored(engine)
    assert 0 < at_kill < total, "the kill must land mid-stream"

    second = start(settings, log)
    try:
        wait_for(lambda: stored(engine) == total, "not everything was stored", log)
        wait_for(
            lambda: (
                int(redis_client.xpending(METRICS_STREAM, METRICS_GROUP)["pending"]) == 0  # type: ignore[index]
                and redis_client.xinfo_groups(METRICS_STREAM)[0]["lag"] == 0
            ),  # type: ignore[index]
            "entries stayed unacknowledged",
            log,
        )
        assert redis_client.exists(METRICS_INGEST_HEALTH_KEY)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0
    # Exactly once: every (node, boot, seq) once, none missing.
    with engine.connect() as conn:
        per_node = dict(
            conn.execute(
                select(samples.c.node_id, func.count(func.distinct(samples.c.seq))).group_by(
                    samples.c.node_id
                )
            ).all()
        )
    assert per_node == dict.fromkeys(NODES, PER_NODE)
    assert stored(engine) == total
    # A clean stop removes the health key; the stream was trimmed as it went.
    assert not redis_client.exists(METRICS_INGEST_HEALTH_KEY)
    assert int(redis_client.xlen(METRICS_STREAM)) < total

"""The thin slice end to end: ``smctl up``, then a real ``sm-agent`` process.

The agent starts with nothing but the core's URL and the enrollment key that
``up`` printed. It learns which CA to trust from the key's fingerprint,
enrolls over verified TLS, connects to the gateway with its own credential,
heartbeats, and the node shows ``online`` in the registry's node list; after
SIGTERM it exits cleanly and the node goes ``offline``.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sm_shared.datadir import DataDir
from sm_shared.scopes import ALL_SCOPES
from sm_shared.tokens import issue_access_token

pytestmark = pytest.mark.slow

SM_AGENT = str(Path(sys.executable).with_name("sm-agent"))
KEY = re.compile(r"\b(sme1\.[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43})\b")
URL = re.compile(r"^API:\s+(https://\S+)", re.MULTILINE)


def _free_pair() -> int:
    """A port P with P + 1 free too (``up`` puts the gateway on the next port)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port < 65000:
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no pair of free ports")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SM_")}


@dataclass
class Core:
    data: DataDir
    api: str
    enrollment_key: str
    output: str

    def nodes(self) -> list[dict[str, Any]]:
        token = issue_access_token(
            self.data, subject="test", client_id="sm-admin", scopes=ALL_SCOPES, ttl=300
        )
        verify = ssl.create_default_context(cafile=str(self.data.ca_cert))
        with httpx.Client(base_url=self.api, verify=verify, trust_env=False) as http:
            response = http.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


def _wait(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def core(tmp_path: Path, redis_url: str) -> Iterator[Core]:
    data = tmp_path / "core"
    port = _free_pair()
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sm_ctl",
            "up",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--no-agent",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_clean_env(),
    )
    stdout = up.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True)
    reader.start()
    output = ""
    deadline = time.monotonic() + 45
    try:
        while "is ready" not in output:
            assert up.poll() is None, f"smctl up exited:\n{output}"
            assert time.monotonic() < deadline, f"smctl up is not ready:\n{output}"
            try:
                output += lines.get(timeout=0.5)
            except queue.Empty:
                continue
        key, api = KEY.search(output), URL.search(output)
        assert key is not None, output
        assert api is not None, output
        yield Core(DataDir(data), api.group(1), key.group(1), output)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        reader.join(10)
        stdout.close()


def test_a_wrong_fingerprint_stops_enrollment(core: Core, tmp_path: Path) -> None:
    prefix, _, secret = core.enrollment_key.split(".")
    forged = f"{prefix}.{'A' * 43}.{secret}"
    state = tmp_path / "agent-forged"
    result = subprocess.run(
        [SM_AGENT, "enroll", "--server", core.api, "--key", forged, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=30,
        env=_clean_env(),
    )
    assert result.returncode == 1
    assert "does not match the key" in result.stderr
    assert not (state / "credential").exists()
    assert not (state / "ca.pem").exists()
    assert core.nodes() == []


def test_an_agent_process_enrolls_connects_and_shows_online(core: Core, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    config = tmp_path / "agent.toml"
    config.write_text(
        f'# written by the test\nserver = "{core.api}"\n'
        f'enrollment_key = "{core.enrollment_key}"\nstate_dir = "{state}"\n'
    )
    agent = subprocess.Popen(
        [SM_AGENT, "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_clean_env(),
    )
    try:
        _wait(lambda: (state / "credential").exists() or agent.poll() is not None, 20, "enrollment")
        assert agent.poll() is None, agent.communicate()[0]

        # Trust came from the key alone: the CA it pinned is the core's.
        assert (state / "ca.pem").read_bytes().strip() == core.data.ca_cert.read_bytes().strip()
        for name in ("credential", "ca.pem", "node.json"):
            assert (state / name).stat().st_mode & 0o777 == 0o600
        assert "enrollment_key" not in config.read_text()
        assert config.read_text().startswith("# written by the test\n")

        def online() -> bool:
            nodes = core.nodes()
            return len(nodes) == 1 and nodes[0]["status"] == "online"

        _wait(online, 15, "the node to show online")
        node = core.nodes()[0]
        assert node["hostname"] == socket.gethostname()
        assert (
            node["facts"]["boot_id"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        )
        assert node["last_seen"] is not None

        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0
        _wait(lambda: core.nodes()[0]["status"] == "offline", 10, "the node to show offline")
    finally:
        if agent.poll() is None:
            agent.kill()
        log = agent.communicate()[0]
    assert "connected to wss://" in log
    assert "Traceback" not in log

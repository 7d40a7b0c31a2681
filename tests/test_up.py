"""``smctl up`` as an operator runs it: a real process, a private redis-server, real children.

It must print both keys and the URLs once everything is ready, serve the API
over TLS verified with its own CA, hand an admin token for the secret key
(and none for the enrollment key), enroll its local agent, restart a child
that dies, refuse to start when a port is taken (naming the child), and
leave nothing running after SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sm_ctl import banner, local_agent
from sm_ctl.instance import UpProcess, free_port_pair
from sm_shared.access_keys import AccessKey, KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.pki import ca_fingerprint

pytestmark = pytest.mark.slow

# The children check every response against the contract.
STRICT = {"SM_VALIDATE_RESPONSES": "true"}


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited; only its parent has not collected it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def tls(data: DataDir) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(data.ca_cert))


def admin_token(client: httpx.Client, secret: str) -> httpx.Response:
    return client.post(
        "/api/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "sm-admin", "client_secret": secret},
    )


@pytest.fixture
def core(tmp_path: Path) -> Iterator[tuple[UpProcess, banner.Banner]]:
    """``up`` on a fresh data directory with a private redis-server, and its banner."""
    up = UpProcess.start(tmp_path / "data", free_port_pair(), env=STRICT)
    try:
        yield up, up.wait_ready()
    finally:
        up.stop()


def test_up_prints_the_keys_serves_tls_and_stops_cleanly(
    core: tuple[UpProcess, banner.Banner],
) -> None:
    up, facts = core
    print(
        f"\nsmctl up: {up.ready_after:.2f} s from exec to ready (it reports {facts.seconds:.2f} s)"
    )

    # Both keys, valid, carrying the fingerprint of this data directory's CA.
    enrollment = AccessKey.parse(facts.enrollment_key, KeyKind.ENROLLMENT)
    secret = AccessKey.parse(facts.secret_key, KeyKind.SECRET)
    assert enrollment == load_key(up.data, KeyKind.ENROLLMENT)
    assert secret == load_key(up.data, KeyKind.SECRET)
    fingerprint = ca_fingerprint(up.data.ca_cert.read_bytes())
    assert enrollment.fingerprint == secret.fingerprint == fingerprint
    assert facts.fingerprint == ":".join(f"{b:02X}" for b in fingerprint)
    assert set(facts.processes) == {
        "redis",
        "api",
        "metrics-ingest",
        "commands-consumer",
        "worker",
        "gateway",
        "agent",
        "web",
    }
    # The web client answers on loopback, served with no CDN (it loads offline).
    assert facts.web_url.startswith("http://127.0.0.1:"), facts.fields
    page = httpx.get(facts.web_url, trust_env=False, timeout=10)
    assert page.status_code == 200
    assert "<html" in page.text.lower()

    with httpx.Client(base_url=facts.api_url, verify=tls(up.data), trust_env=False) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert set(ready.json()["services"]) == {"registry", "metrics", "commands"}
        gateway = facts.gateway_url.replace("wss://", "https://").replace("/agent/ws", "/readyz")
        assert httpx.get(gateway, verify=tls(up.data), trust_env=False).status_code == 200
        # The API process points agents that knock on the wrong port to the gateway.
        wrong = client.get("/agent/ws")
        assert wrong.status_code == 404
        origin = facts.gateway_url.removesuffix("/agent/ws")
        assert wrong.json()["detail"] == f"/agent/ws is served by the gateway at {origin}"

        # The enrollment key is not a client secret.
        refused = admin_token(client, facts.enrollment_key)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
        granted = admin_token(client, facts.secret_key)
        assert granted.status_code == 200, granted.text
        token = granted.json()["access_token"]
        nodes = client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
        assert nodes.status_code == 200, nodes.text
        # The local agent enrolled with the printed key and is online.
        (node,) = nodes.json()["items"]
        assert node["status"] == "online"
        assert node["hostname"] == socket.gethostname()
        assert facts.fields[banner.AGENT].startswith(f"node {node['id']} online")

    socket_path = up.data.redis_dir / "redis.sock"
    assert socket_path.exists()
    assert up.stop() == 0
    assert up.lines[-1].startswith("Stopped.")
    for name, pid in facts.processes.items():
        assert not alive(pid), f"{name} ({pid}) still runs after up stopped"
    assert not socket_path.exists()  # redis shut down cleanly (it removes its socket)


def test_a_dead_child_is_restarted(core: tuple[UpProcess, banner.Banner]) -> None:
    up, facts = core
    api = facts.processes["api"]
    os.kill(api, signal.SIGKILL)
    notice = up.read_until(lambda line: line.startswith("api exited"), 10)
    assert notice.startswith("api exited with signal SIGKILL; restarting in 1 s")

    def ready_again() -> bool:
        try:
            answer = httpx.get(
                f"{facts.api_url}/readyz", verify=tls(up.data), trust_env=False, timeout=2
            )
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    wait_for(ready_again, 30, "the restarted API to answer")
    assert not alive(api)
    # The others were left alone.
    for name in ("redis", "metrics-ingest", "commands-consumer", "worker", "gateway", "agent"):
        assert alive(facts.processes[name]), name
    assert up.stop() == 0


def test_children_die_with_a_killed_up(core: tuple[UpProcess, banner.Banner]) -> None:
    up, facts = core
    assert up.stop(signal.SIGKILL) == -signal.SIGKILL

    def all_gone() -> bool:
        return not any(alive(pid) for pid in facts.processes.values())

    wait_for(all_gone, 15, "the children of a killed up to exit")


def test_a_child_that_cannot_start_stops_everything_naming_it(tmp_path: Path) -> None:
    port = free_port_pair()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))  # the gateway's port
        taken.listen()
        up = UpProcess.start(tmp_path / "data", port, "--no-agent")
        code = up.wait(60)
    assert code == 1, up.output
    assert "error: the gateway process exited before it was ready" in up.output
    assert "address already in use" in up.output.lower()  # from the gateway's log
    assert not (up.data.redis_dir / "redis.sock").exists()


def test_a_second_up_on_the_same_data_dir_is_refused(
    core: tuple[UpProcess, banner.Banner],
) -> None:
    up, _ = core
    second = subprocess.run(
        [sys.executable, "-m", "sm_ctl", "up", "--data-dir", str(up.data.root)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("SM_")},
    )
    assert second.returncode == 1
    assert f"{up.data.root} is in use by `smctl up` (pid {up.process.pid})" in second.stderr


def test_a_refused_local_agent_does_not_stop_the_core(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    initialize(data)
    # A local agent whose node the registry does not know (deleted, or another core's).
    state = local_agent.agent_dir(data)
    state.mkdir(mode=0o700)
    node = "0b6f4a8e-3c1d-4a57-9d3e-2f1a7c9b5e10"
    (state / "credential").write_text(f"smn1.{node}.{'x' * 43}\n")
    (state / "ca.pem").write_bytes(data.ca_cert.read_bytes())
    (state / "node.json").write_text(
        json.dumps(
            {
                "node_id": node,
                "command_public_key": "",
                "gateway_url": "wss://127.0.0.1:1/agent/ws",
                "server": "https://127.0.0.1:1",
                "heartbeat_interval": 5,
            }
        )
    )
    up = UpProcess.start(data.root, free_port_pair())
    try:
        facts = up.wait_ready()
        assert facts.fields[banner.AGENT].startswith(
            "not running: the local agent exited before it was ready"
        )
        with httpx.Client(base_url=facts.api_url, verify=tls(data), trust_env=False) as client:
            assert client.get("/readyz").status_code == 200
    finally:
        assert up.stop() == 0
    assert "agent exited with code 3" in up.output

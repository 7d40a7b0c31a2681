"""Remote control end to end: real ``sm-agent`` processes against a real ``up``.

Client → commands API → registry (resolve) → dispatch job → gateway inbox →
agent (verifies the signed order, runs it) → reports → gateway → ``results``
stream → commands (recorded once) → ``command:<id>`` events → the client; and
every step on the audit chain.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.sync.client import ClientConnection, connect

from sm_ctl import banner
from sm_ctl.instance import UpProcess, free_port_pair
from sm_shared.datadir import DataDir
from sm_shared.scopes import ALL_SCOPES
from sm_shared.tokens import issue_access_token
from tests.live_core import Agent, Api, wait_for

pytestmark = pytest.mark.slow

STRICT = {"SM_VALIDATE_RESPONSES": "true", "SM_HEARTBEAT_INTERVAL": "1"}
SMCTL = str(Path(sys.executable).with_name("smctl"))
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled", "expired", "refused"}
SHELL = ("allow_shell = true",)


class Commands(Api):
    """The commands API on top of the admin API client."""

    def post(self, body: dict[str, Any], status: int = 202) -> dict[str, Any]:
        response = self.http.post("/api/v1/commands", json=body)
        assert response.status_code == status, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def run(self, node_ids: list[str], script: str, **more: Any) -> dict[str, Any]:
        body = {"target": {"node_ids": node_ids}, "kind": "shell", "shell": {"script": script}}
        return self.post({**body, **more})

    def get(self, command_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/commands/{command_id}")
        assert response.status_code == 200, response.text
        command: dict[str, Any] = response.json()
        return command

    def finished(self, command_id: str, within: float = 30) -> dict[str, Any]:
        """The command once every execution reached a final state."""
        wait_for(
            lambda: all(x["state"] in TERMINAL for x in self.get(command_id)["executions"]),
            within,
            f"command {command_id} to finish",
            step=0.1,
        )
        return self.get(command_id)

    def output(self, command_id: str, execution_id: str, stream: str = "stdout") -> bytes:
        """All of one stream's kept output, page by page."""
        data, offset = b"", 0
        while True:
            response = self.http.get(
                f"/api/v1/commands/{command_id}/executions/{execution_id}/output",
                params={"stream": stream, "offset": offset, "limit": 4096},
            )
            assert response.status_code == 200, response.text
            page = response.json()
            data += base64.b64decode(page["data"])
            if page["next_offset"] == offset or not page["data"]:
                return data
            offset = page["next_offset"]

    def audit_verify(self) -> dict[str, Any]:
        response = self.http.get("/api/v1/audit/verify")
        assert response.status_code == 200, response.text
        verdict: dict[str, Any] = response.json()
        return verdict

    def audit(self, **params: str) -> list[dict[str, Any]]:
        response = self.http.get("/api/v1/audit", params={"limit": "500", **params})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@dataclass
class Fleet:
    up: UpProcess
    ready: banner.Banner
    api: Commands
    local: str  # up's own agent (shell, service and logs enabled by up)
    agents: dict[str, Agent]  # node id → a second and third agent, shell enabled

    @property
    def node_ids(self) -> list[str]:
        return sorted([self.local, *self.agents])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    up = UpProcess.start(root / "data", free_port_pair(), env=STRICT)
    agents: dict[str, Agent] = {}
    api: Commands | None = None
    try:
        ready = up.wait_ready()
        api = Commands(up.data, ready.api_url)
        wait_for(lambda: len(api.nodes(status="online")) == 1, 20, "up's local agent online")
        local = api.nodes()[0]["id"]
        for name in ("two", "three"):
            agent = Agent(root / name, ready.api_url, ready.enrollment_key, settings=SHELL)
            agent.start()
            agents[agent.node_id()] = agent
        wait_for(lambda: len(api.nodes(status="online")) == 3, 20, "three nodes online")
        yield Fleet(up, ready, api, local, agents)
    finally:
        for agent in agents.values():
            if agent.process is not None and agent.process.poll() is None:
                agent.stop()
        if api is not None:
            api.close()
        up.stop()


@contextmanager
def events_socket(fleet: Fleet, *topics: str) -> Iterator[ClientConnection]:
    """``/events/ws`` subscribed to ``topics``, with an admin token."""
    token = issue_access_token(
        fleet.up.data, subject="test", client_id="sm-admin", scopes=ALL_SCOPES, ttl=900
    )
    url = fleet.ready.gateway_url.replace("/agent/ws", "/events/ws")
    with connect(
        url,
        ssl=ssl.create_default_context(cafile=str(fleet.up.data.ca_cert)),
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    ) as socket:
        socket.send(json.dumps({"type": "subscribe", "id": "1", "topics": list(topics)}))
        answer = json.loads(socket.recv(10))
        assert answer["type"] == "subscribed", answer
        yield socket


def child_pid(fleet: Fleet, name: str) -> int:
    """The pid of ``up``'s child ``name`` now (the banner's, unless up restarted it since)."""
    for child in psutil.Process(fleet.up.process.pid).children():
        argv = child.cmdline()
        if name == "redis" and argv and "redis-server" in argv[0]:
            return int(child.pid)
        if "serve" in argv[:-1] and argv[argv.index("serve") + 1] == name:
            return int(child.pid)
    raise AssertionError(f"up has no child {name!r}")


def test_a_shell_command_on_three_nodes_returns_each_output_and_exit_code(fleet: Fleet) -> None:
    script = 'echo "node:$SM_TEST_WORD"; echo to-stderr >&2; exit 3'
    spec = {"script": script, "env": {"SM_TEST_WORD": "secret-word"}}
    command = fleet.api.post(
        {"target": {"node_ids": fleet.node_ids}, "kind": "shell", "shell": spec}
    )
    assert command["node_count"] == 3
    assert len(command["executions"]) == 3
    # Environment values never show in listings.
    assert "secret-word" not in json.dumps(command)
    done = fleet.api.finished(command["id"])
    assert done["summary"]["failed"] == 3, done["summary"]
    for execution in done["executions"]:
        assert execution["state"] == "failed"
        assert execution["exit_code"] == 3
        assert execution["started_at"] <= execution["ended_at"]
        stdout = fleet.api.output(done["id"], execution["id"], "stdout")
        stderr = fleet.api.output(done["id"], execution["id"], "stderr")
        assert stdout == b"node:secret-word\n"
        assert stderr == b"to-stderr\n"
        assert execution["stdout"]["bytes"] == len(stdout)
        assert execution["stderr"]["truncated"] is False

    argv = fleet.api.post(
        {"target": {"all": True}, "kind": "shell", "shell": {"argv": ["printf", "%s|", "a b", "c"]}}
    )
    done = fleet.api.finished(argv["id"])
    assert {x["state"] for x in done["executions"]} == {"succeeded"}
    for execution in done["executions"]:
        assert fleet.api.output(done["id"], execution["id"]) == b"a b|c|"


def test_the_first_output_line_arrives_live_before_the_command_exits(fleet: Fleet) -> None:
    node = next(iter(fleet.agents))
    script = "sleep 0.5; echo first; sleep 2.5; echo second"
    command = fleet.api.run([node], script)
    seen: list[tuple[float, dict[str, Any]]] = []
    with events_socket(fleet, f"command:{command['id']}") as socket:
        began = time.monotonic()
        while not any(e["type"] == "execution" and e["state"] in TERMINAL for _, e in seen):
            message = json.loads(socket.recv(15))
            assert message["type"] == "progress", message
            seen.append((time.monotonic() - began, message["event"]))
    first = next(
        at for at, e in seen if e["type"] == "output" and b"first" in base64.b64decode(e["data"])
    )
    ended = next(at for at, e in seen if e["type"] == "execution" and e["state"] in TERMINAL)
    assert ended - first >= 1.5, seen
    states = [e["state"] for _, e in seen if e["type"] == "execution"]
    assert states[-1] == "succeeded", states
    assert "running" in states, states


def test_a_command_for_an_offline_node_runs_when_it_returns_or_expires(
    fleet: Fleet, tmp_path: Path
) -> None:
    node, agent = next(iter(fleet.agents.items()))
    assert agent.stop() == 0, agent.output()
    wait_for(lambda: fleet.api.status(node) == "offline", 10, "the node offline")
    ran = tmp_path / "ran"
    expired = tmp_path / "expired"
    waiting = fleet.api.run([node], f"touch {ran}", expires_in=120)
    lapsing = fleet.api.run([node], f"touch {expired}", expires_in=2)
    time.sleep(1)
    assert fleet.api.get(waiting["id"])["executions"][0]["state"] == "queued"
    # The short one expires while the node is away.
    lapsed = fleet.api.finished(lapsing["id"], within=20)
    assert lapsed["executions"][0]["state"] == "expired"
    agent.start()
    returned = fleet.api.finished(waiting["id"], within=30)
    assert returned["executions"][0]["state"] == "succeeded"
    assert ran.exists()
    time.sleep(1)
    assert not expired.exists()


def test_a_node_that_does_not_enable_shell_refuses_with_the_reason(
    fleet: Fleet, tmp_path: Path
) -> None:
    agent = Agent(tmp_path / "locked", fleet.ready.api_url, fleet.ready.enrollment_key)
    agent.start()
    node = agent.node_id()
    try:
        wait_for(lambda: fleet.api.status(node) == "online", 20, "the locked node online")
        marker = tmp_path / "must-not-exist"
        command = fleet.api.run([node], f"touch {marker}")
        done = fleet.api.finished(command["id"])
        (execution,) = done["executions"]
        assert execution["state"] == "refused"
        assert "shell" in execution["reason"], execution
        assert not marker.exists()
    finally:
        agent.stop()
        response = fleet.api.http.delete(f"/api/v1/nodes/{node}")
        assert response.status_code == 204, response.text


def test_cancel_stops_a_running_command(fleet: Fleet) -> None:
    node = fleet.local
    command = fleet.api.run([node], "echo started; sleep 60")
    execution_id = command["executions"][0]["id"]
    wait_for(
        lambda: fleet.api.get(command["id"])["executions"][0]["state"] == "running",
        15,
        "the command running",
    )
    response = fleet.api.http.post(f"/api/v1/commands/{command['id']}/cancel")
    assert response.status_code == 202, response.text
    began = time.monotonic()
    done = fleet.api.finished(command["id"], within=20)
    assert time.monotonic() - began < 10
    assert done["executions"][0]["state"] == "cancelled"
    assert fleet.api.output(command["id"], execution_id) == b"started\n"


def test_smctl_run_on_all_nodes_prints_each_output_and_the_audit_chain_verifies(
    fleet: Fleet,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SM_")},
        "SM_SERVER": fleet.ready.api_url,
        "SM_SECRET_KEY": fleet.ready.secret_key,
    }
    run = subprocess.run(
        [SMCTL, "run", "-t", "all", "--", "uname", "-a"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True).stdout
    # Every node (all on this machine) printed the same line, once each.
    assert run.stdout.count(uname.strip()) >= len(fleet.node_ids), run.stdout
    commands = fleet.api.http.get("/api/v1/commands", params={"limit": 1}).json()["items"]
    newest = fleet.api.get(commands[0]["id"])
    assert sorted(x["node_id"] for x in newest["executions"]) == fleet.node_ids
    for execution in newest["executions"]:
        assert execution["state"] == "succeeded"
        assert fleet.api.output(newest["id"], execution["id"]).decode() == uname

    def finishes() -> list[dict[str, Any]]:
        records = fleet.api.audit(action="execution.finish")
        return [r for r in records if r["detail"]["command_id"] == newest["id"]]

    def chained() -> bool:
        return len(finishes()) == len(fleet.node_ids)

    wait_for(chained, 15, "every execution of the run on the audit chain", step=0.2)
    created = fleet.api.audit(action="command.create", target=f"command:{newest['id']}")
    assert len(created) == 1
    assert "uname" in json.dumps(created[0]["detail"])
    assert sorted(created[0]["detail"]["node_ids"]) == fleet.node_ids
    for record in finishes():
        assert record["detail"]["exit_code"] == 0, record
        assert record["target"].startswith("execution:"), record

    verify = subprocess.run(
        [SMCTL, "audit", "verify"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert fleet.api.audit_verify()["ok"] is True


def test_an_edited_audit_record_is_named_by_verify(tmp_path: Path) -> None:
    """On a core of its own: the test edits its database behind its back."""
    up = UpProcess.start(tmp_path / "data", free_port_pair(), env=STRICT)
    try:
        ready = up.wait_ready()
        api = Commands(up.data, ready.api_url)
        try:
            wait_for(lambda: len(api.nodes(status="online")) == 1, 20, "the local agent online")
            local = api.nodes()[0]["id"]
            for word in ("one", "two", "three"):
                api.finished(api.run([local], f"echo {word}")["id"])
            wait_for(lambda: len(api.audit(action="execution.finish")) == 3, 15, "the chain")
            assert api.audit_verify()["ok"] is True
            records = sorted(api.audit(), key=lambda r: r["seq"])
            victim = next(r for r in records if r["action"] == "command.create")
            database = DataDir(tmp_path / "data").database("commands")
            with sqlite3.connect(database) as db:
                changed = db.execute(
                    "UPDATE audit_records SET actor = 'someone-else' WHERE seq = ?",
                    (victim["seq"],),
                ).rowcount
            assert changed == 1
            verdict = api.audit_verify()
            assert verdict["ok"] is False
            assert verdict["first_bad"]["seq"] == victim["seq"], verdict
        finally:
            api.close()
    finally:
        up.stop()


def test_a_command_survives_a_crash_of_redis(fleet: Fleet) -> None:
    """Redis killed (-9) while a command runs: up restarts it from its AOF; the agent's
    reports, kept until acknowledged, reach the core over its next connection."""
    command = fleet.api.run([fleet.local], "sleep 2; echo survived")
    wait_for(
        lambda: fleet.api.get(command["id"])["executions"][0]["state"] == "running",
        15,
        "the command running",
    )
    os.kill(child_pid(fleet, "redis"), signal.SIGKILL)
    done = fleet.api.finished(command["id"], within=60)
    (execution,) = done["executions"]
    assert execution["state"] == "succeeded", execution
    assert fleet.api.output(done["id"], execution["id"]) == b"survived\n"
    again = fleet.api.finished(fleet.api.run([fleet.local], "echo after")["id"], within=30)
    assert again["executions"][0]["state"] == "succeeded"


def test_a_command_posted_while_the_worker_is_down_is_dispatched_when_it_returns(
    fleet: Fleet,
) -> None:
    os.kill(child_pid(fleet, "worker"), signal.SIGKILL)
    command = fleet.api.run(fleet.node_ids, "echo dispatched")
    done = fleet.api.finished(command["id"], within=45)
    assert {x["state"] for x in done["executions"]} == {"succeeded"}, done["summary"]


def test_a_command_posted_while_the_gateway_is_down_is_delivered_when_it_returns(
    fleet: Fleet,
) -> None:
    os.kill(child_pid(fleet, "gateway"), signal.SIGKILL)
    command = fleet.api.run([fleet.local], "echo after-the-crash")
    done = fleet.api.finished(command["id"], within=45)
    (execution,) = done["executions"]
    assert execution["state"] == "succeeded", execution
    assert fleet.api.output(done["id"], execution["id"]) == b"after-the-crash\n"

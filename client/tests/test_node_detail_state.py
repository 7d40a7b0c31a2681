"""The node detail view-model against the real core and real agents.

Besides ``up``'s own agent (its ``systemctl`` is the real one and systemd is
not running here, so it refuses service control with that reason), a second
agent allows service control and logs, with a ``systemctl``/``journalctl``
first on its PATH that record their arguments and print what the real ones
would (``list-units`` prints a unit table).
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sm_client.api import CoreApi
from sm_client.api.commands import ENDED
from sm_client.live import LiveEvents
from sm_client.state.node_detail import (
    SPANS,
    Gauges,
    NodeDetail,
    ServiceRow,
    parse_units,
)
from sm_client.state.observable import Load, Phase
from sm_ctl import local_agent

from .conftest import Core, extra_agent
from .feeds import until

# What a recording ``systemctl`` prints for ``list-units`` (the real format of
# ``systemctl list-units --type=service --all --no-pager --plain``).
UNIT_TABLE = """\
UNIT                     LOAD      ACTIVE   SUB     DESCRIPTION
app-worker@1.service     loaded    active   running App worker 1
cron.service             loaded    active   running Regular background program processing daemon
nginx.service            loaded    active   running A high performance web server
ssh.service              loaded    inactive dead    OpenBSD Secure Shell server
ghost.service            not-found inactive dead    ghost.service

LOAD   = Reflects whether the unit definition was properly loaded.
ACTIVE = The high-level unit activation state, i.e. generalization of SUB.
SUB    = The low-level unit activation state, values depend on unit type.

5 loaded units listed.
To show all installed unit files use 'systemctl list-unit-files'.
"""

RECORDER = """#!/bin/sh
printf '%s\\n' "$*" >> "{calls}"
if [ "$1" = "list-units" ]; then
  cat "{table}"
  exit 0
fi
echo "recorded $*"
"""


def recording_bin(root: Path) -> tuple[Path, Path]:
    """A directory with a recording ``systemctl`` and ``journalctl``; the calls file."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    calls = root / "calls"
    table = root / "units.txt"
    table.write_text(UNIT_TABLE)
    for name in ("systemctl", "journalctl"):
        program = bin_dir / name
        program.write_text(RECORDER.format(calls=calls, table=table))
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return bin_dir, calls


@dataclass
class ServiceNode:
    node_id: str
    calls: Path
    logs: Path


@pytest.fixture(scope="module")
def service_node(core: Core, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceNode]:
    root = tmp_path_factory.mktemp("service-agent")
    bin_dir, calls = recording_bin(root)
    logs = root / "logs"
    logs.mkdir()
    (logs / "app.log").write_text("".join(f"line {i}\n" for i in range(1, 11)))
    settings = [
        "allow_service = true",
        "allow_logs = true",
        'service_units = ["nginx.service", "app-*"]',
        f'log_roots = ["{logs}"]',
    ]
    path = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    with extra_agent(core, root / "agent", settings, env=path) as node:
        yield ServiceNode(node, calls, logs)


async def online(api: CoreApi, node_id: str) -> None:
    deadline = time.monotonic() + 30
    while (await api.call("GET", f"/api/v1/nodes/{node_id}"))["status"] != "online":
        assert time.monotonic() < deadline, f"{node_id} never came online"
        await asyncio.sleep(0.2)


async def execution_state(api: CoreApi, command_id: str) -> str:
    """The state the command's one execution ended in."""
    deadline = time.monotonic() + 15
    while True:
        command = await api.call("GET", f"/api/v1/commands/{command_id}")
        state = str(command["executions"][0]["state"])
        if state in ENDED:
            return state
        assert time.monotonic() < deadline, f"{command_id} still {state}"
        await asyncio.sleep(0.2)


async def local_node(api: CoreApi, core: Core) -> str:
    """The id of up's own agent once it is online."""
    node_id = local_agent.node_id(core.up.data)
    await online(api, node_id)
    return node_id


def phase(load: Load) -> Phase:
    return load.phase


def following(detail: NodeDetail) -> bool:
    return detail.logs.following


def log_ends_with(detail: NodeDetail, text: str) -> Callable[[], bool]:
    return lambda: detail.logs.text.endswith(text)


# --------------------------------------------------------------------------- parsing


def test_units_parse_from_the_list_units_table() -> None:
    rows = parse_units(UNIT_TABLE)
    assert [r.unit for r in rows] == [
        "app-worker@1.service",
        "cron.service",
        "nginx.service",
        "ssh.service",
        "ghost.service",
    ]
    assert rows[2] == ServiceRow(
        "nginx.service", "loaded", "active", "running", "A high performance web server"
    )
    assert rows[4].load == "not-found"


def test_units_parse_without_plain_or_legend() -> None:
    text = (
        "  UNIT            LOAD   ACTIVE SUB     DESCRIPTION\n"
        "● failed.service  loaded failed failed  Something that failed\n"
        "  ok.service      loaded active running Fine\n"
        "  bare.service    loaded active exited\n"
    )
    rows = parse_units(text)
    assert [(r.unit, r.active, r.description) for r in rows] == [
        ("failed.service", "failed", "Something that failed"),
        ("ok.service", "active", "Fine"),
        ("bare.service", "active", ""),
    ]
    assert parse_units("recorded list-units --type=service\n") == []


def test_gauges_from_a_heartbeat_count_like_the_metrics_service() -> None:
    gauges = Gauges.from_heartbeat(
        {
            "sent_at": 100.0,
            "sample": {
                "cpu": {"percent": 12.5, "per_core": [10.0, 15.0]},
                "memory": {"total": 4000, "used": 1000, "available": 3000},
                "swap": {"total": 0, "used": 0},
                "load": [0.5, 0.25, 0.125],
                "disks": [
                    {"mount": "/", "fstype": "ext4", "total": 100, "used": 30, "free": 70},
                    {"mount": "/d", "fstype": "xfs", "total": 100, "used": 10, "free": 90},
                ],
                "net": {"rx_bps": 1536.0, "tx_bps": None, "rx_bytes": 1, "tx_bytes": 2},
                "processes": 142,
                "uptime": 86400.5,
            },
        }
    )
    assert (gauges.cpu, gauges.cores, gauges.memory_percent) == (12.5, 2, 25.0)
    assert (gauges.disk_percent, gauges.disk_used, gauges.disk_total) == (20.0, 40.0, 200.0)
    assert gauges.load == (0.5, 0.25, 0.125)
    assert gauges.disks == (("/", "ext4", 30, 100), ("/d", "xfs", 10, 100))
    assert (gauges.rx_bps, gauges.tx_bps, gauges.uptime) == (1536.0, None, 86400.5)


def test_logs_spec_tells_a_file_from_a_unit() -> None:
    assert NodeDetail.logs_spec("/var/log/syslog", 50) == {"lines": 50, "path": "/var/log/syslog"}
    assert NodeDetail.logs_spec(" nginx ", 10, follow=True) == {
        "lines": 10,
        "unit": "nginx",
        "follow": True,
    }


# --------------------------------------------------------------------------- live


async def test_facts_gauges_and_charts_of_a_live_node(
    admin: CoreApi, feed: LiveEvents, core: Core
) -> None:
    node_id = await local_node(admin, core)
    detail = NodeDetail(admin, feed, node_id)
    changes = []
    detail.listen(lambda: changes.append(1))
    await detail.enter()
    try:
        assert detail.load.phase is Phase.READY
        assert detail.node is not None
        facts = detail.node["facts"]
        assert facts["cpu_count"] >= 1
        assert facts["kernel"]
        assert facts["agent_version"]
        assert detail.online
        # Gauges: from the latest sample at once, then from each heartbeat.
        await until(lambda: detail.gauges is not None, 15, "the first gauges")
        first = detail.gauges
        assert first is not None
        assert first.cpu is not None
        assert first.memory_percent is not None
        await until(
            lambda: detail.gauges is not None and detail.gauges.at > first.at, 15, "a heartbeat"
        )
        # The 1 h charts hold the samples stored so far (one a second here).
        await until(lambda: bool(detail.charts), 10, "charts")
        while detail.charts["cpu"].points < 2:
            await asyncio.sleep(1)
            await detail.read_charts()
        cpu = detail.charts["cpu"]
        assert cpu.points >= 2
        assert len(cpu.lines[0].points) == cpu.points
        assert [line.metric for line in detail.charts["load"].lines] == ["load1", "load5", "load15"]
        assert [line.metric for line in detail.charts["network"].lines] == [
            "net_rx_bps",
            "net_tx_bps",
        ]
        assert cpu.end - cpu.start >= SPANS["1h"] - cpu.step
        # Coarser spans read the rolled-up tiers (empty until the first roll-up).
        await detail.set_span("7d")
        assert detail.span == "7d"
        assert detail.charts_load.phase in (Phase.READY, Phase.EMPTY)
        with pytest.raises(ValueError, match="unknown span"):
            await detail.set_span("2y")
        assert changes
    finally:
        detail.leave()
    assert not feed.topics


async def test_an_unknown_node_is_an_error_with_the_problem(
    admin: CoreApi, feed: LiveEvents
) -> None:
    detail = NodeDetail(admin, feed, "00000000-0000-4000-8000-000000000000")
    await detail.enter()
    detail.leave()
    assert detail.load.phase is Phase.ERROR
    assert detail.load.problem is not None
    assert detail.load.problem.status == 404


async def test_labels_and_group_are_saved(admin: CoreApi, feed: LiveEvents, core: Core) -> None:
    node_id = await local_node(admin, core)
    await admin.call("POST", "/api/v1/groups", json={"name": "detail-test"}, expect=(201, 409))
    detail = NodeDetail(admin, feed, node_id)
    await detail.enter()
    try:
        await detail.read_groups()
        assert "detail-test" in detail.groups
        before = dict(detail.node["labels"]) if detail.node else {}
        assert await detail.save(labels={**before, "role": "web"}, group="detail-test")
        assert detail.node is not None
        assert detail.node["labels"]["role"] == "web"
        assert detail.node["group"] == "detail-test"
        assert not await detail.save(labels={"bad key!": "x"}, group=None)
        assert detail.save_problem is not None
        assert detail.save_problem.status == 400
        assert await detail.save(labels=before, group=None)
        assert detail.node["group"] is None
    finally:
        detail.leave()


async def test_services_list_and_restart_with_a_recording_systemctl(
    admin: CoreApi, feed: LiveEvents, service_node: ServiceNode
) -> None:
    await online(admin, service_node.node_id)
    detail = NodeDetail(admin, feed, service_node.node_id, poll=0.3)
    await detail.enter()
    try:
        assert detail.can_run
        await detail.list_services()
        assert detail.services_load.phase is Phase.READY, detail.services_load.problem
        assert "nginx.service" in [row.unit for row in detail.services]
        assert await detail.service_action("restart", "nginx.service")
        job = detail.jobs["nginx.service"]
        assert not job.running
        assert job.problem is None
        assert job.output == "recorded --no-pager restart nginx.service"
        # A unit the node does not allow: refused, with the node's reason.
        assert not await detail.service_action("stop", "sshd")
        refused = detail.jobs["sshd"].problem
        assert refused is not None
        assert refused.title == "refused: not_allowed"
        assert "sshd.service" in refused.detail
        assert "service_units" in refused.detail
        calls = service_node.calls.read_text().splitlines()
        assert "--no-pager restart nginx.service" in calls
        assert not any("sshd" in call for call in calls)
        await until(lambda: len(detail.executions) >= 3, 10, "the recent commands")
        kinds = [(c["kind"], c.get("service", {}).get("action")) for c in detail.executions]
        assert ("service", "restart") in kinds
        assert ("service", "list") in kinds
        detail.dismiss("sshd")
        assert "sshd" not in detail.jobs
    finally:
        detail.leave()


async def test_a_node_without_systemd_refuses_with_its_reason(
    admin: CoreApi, feed: LiveEvents, core: Core
) -> None:
    node_id = await local_node(admin, core)
    detail = NodeDetail(admin, feed, node_id, poll=0.3)
    await detail.enter()
    try:
        await detail.list_services()
        assert detail.services_load.phase is Phase.ERROR
        problem = detail.services_load.problem
        assert problem is not None
        assert problem.title == "refused: unavailable"
        assert "systemd is not running" in problem.detail
    finally:
        detail.leave()


async def test_logs_of_a_file_and_of_a_unit(
    admin: CoreApi, feed: LiveEvents, service_node: ServiceNode
) -> None:
    await online(admin, service_node.node_id)
    detail = NodeDetail(admin, feed, service_node.node_id, poll=0.3)
    await detail.enter()
    try:
        await detail.read_logs(str(service_node.logs / "app.log"), 3)
        assert detail.logs.load.phase is Phase.READY, detail.logs.load.problem
        assert detail.logs.text == "line 8\nline 9\nline 10\n"
        await detail.read_logs("nginx", 50)
        assert detail.logs.text == "recorded -u nginx.service -n 50 --no-pager -o short-iso\n"
        await detail.read_logs("/etc/passwd", 5)
        assert phase(detail.logs.load) is Phase.ERROR
        problem = detail.logs.load.problem
        assert problem is not None
        assert problem.title == "refused: not_allowed"
        assert "outside the log roots" in problem.detail
    finally:
        detail.leave()


async def test_following_a_file_streams_new_lines_until_stopped(
    admin: CoreApi, feed: LiveEvents, service_node: ServiceNode
) -> None:
    await online(admin, service_node.node_id)
    log = service_node.logs / "follow.log"
    log.write_text("first\n")
    detail = NodeDetail(admin, feed, service_node.node_id, poll=0.3)
    await detail.enter()
    try:
        await detail.follow(str(log), 5)
        assert detail.logs.following
        await until(lambda: detail.logs.text == "first\n", 15, "the tail")
        for i in range(3):
            with log.open("a") as file:
                file.write(f"new {i}\n")
            await until(log_ends_with(detail, f"new {i}\n"), 15, f"line {i}")
        assert detail.logs.text == "first\nnew 0\nnew 1\nnew 2\n"
        command_id = detail.logs.command_id
        assert command_id is not None
        await detail.stop_follow()
        assert not following(detail)
        assert await execution_state(admin, command_id) == "cancelled"
        # Leaving the screen cancels a follow too.
        await detail.follow(str(log), 1)
        second = detail.logs.command_id
        await until(lambda: detail.logs.text == "new 2\n", 15, "the second tail")
    finally:
        detail.leave()
    assert await execution_state(admin, str(second)) == "cancelled"

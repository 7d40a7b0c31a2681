"""Remote control with a real agent process and a gateway speaking the protocol over TLS.

The gateway (``conftest.Gateway``) signs orders with a real Ed25519 key whose
public half is in the agent's state directory, as enrollment leaves it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import shutil
import signal
import stat
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

ALL = {"allow_shell": True, "allow_service": True, "allow_logs": True}


def check_reports(gateway: Any, execution_id: str, validate: Any) -> list[dict[str, Any]]:
    """Every report of the execution is valid by the protocol schema; seqs as the contract says."""
    reports = gateway.reports(execution_id)
    for report in reports:
        validate("AgentMessage", report)
    seqs = [r["seq"] for r in reports]
    assert sorted(set(seqs)) == list(range(len(set(seqs)))), seqs
    return reports


async def test_a_shell_script_runs_and_reports_output_and_exit_code(
    gateway: Any, agent: Any, validate: Any
) -> None:
    await agent.start(**ALL)
    order = gateway.order("shell", {"script": "echo hello; echo oops >&2; exit 3"})
    execution_id = await gateway.execute(order)
    finished = await gateway.final(execution_id)
    assert finished["type"] == "finished", finished
    assert finished["status"] == "failed"
    assert finished["exit_code"] == 3
    assert "signal" not in finished
    assert finished["started_at"] <= finished["ended_at"]
    assert gateway.output(execution_id) == b"hello\n"
    assert gateway.output(execution_id, "stderr") == b"oops\n"
    assert finished["stdout"] == {
        "bytes": 6,
        "sha256": hashlib.sha256(b"hello\n").hexdigest(),
        "truncated": False,
    }
    reports = check_reports(gateway, execution_id, validate)
    assert reports[0]["type"] == "started"
    assert reports[0]["pid"] > 1


async def test_argv_env_and_cwd(gateway: Any, agent: Any, tmp_path: Path) -> None:
    await agent.start(allow_shell=True)
    order = gateway.order(
        "shell",
        {
            "argv": ["/bin/sh", "-c", 'echo "$GREETING"; pwd'],
            "env": {"GREETING": "hi there"},
            "cwd": str(tmp_path),
        },
    )
    execution_id = await gateway.execute(order)
    finished = await gateway.final(execution_id)
    assert finished["status"] == "succeeded", finished
    assert gateway.output(execution_id) == f"hi there\n{tmp_path}\n".encode()
    # Without cwd: the state directory.
    execution_id = await gateway.execute(gateway.order("shell", {"script": "pwd"}))
    await gateway.final(execution_id)
    assert gateway.output(execution_id) == f"{agent.state}\n".encode()


async def test_the_first_line_of_a_slow_command_arrives_before_it_exits(
    gateway: Any, agent: Any
) -> None:
    await agent.start(allow_shell=True)
    execution_id = await gateway.execute(
        gateway.order("shell", {"script": "echo first; sleep 2; echo second"})
    )
    await gateway.wait(lambda: gateway.output(execution_id) == b"first\n", what="first line")
    assert not [r for r in gateway.reports(execution_id) if r["type"] == "finished"]
    first_at = time.monotonic()
    finished = await gateway.final(execution_id)
    assert time.monotonic() - first_at > 1.0
    assert finished["status"] == "succeeded"
    assert gateway.output(execution_id) == b"first\nsecond\n"


async def test_a_timeout_kills_the_whole_tree_even_a_child_ignoring_sigterm(
    gateway: Any, agent: Any, tmp_path: Path
) -> None:
    await agent.start(allow_shell=True, kill_grace=0.5)
    pids = tmp_path / "pids"
    script = (
        f"sh -c 'trap \"\" TERM; echo $$ >> {pids}; sleep 60' & "
        f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; echo running; wait"
    )
    execution_id = await gateway.execute(gateway.order("shell", {"script": script}, timeout=1))
    started = time.monotonic()
    finished = await gateway.final(execution_id)
    assert finished["status"] == "timed_out", finished
    assert finished["exit_code"] is None
    assert finished["signal"] in (signal.SIGTERM, signal.SIGKILL)
    assert time.monotonic() - started < 6
    recorded = [int(p) for p in pids.read_text().split()]
    assert len(recorded) == 3

    def gone() -> bool:
        return all(not _alive(pid) for pid in recorded)

    await gateway.wait(gone, 5, "every process of the tree gone")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_cancel_stops_a_running_command(gateway: Any, agent: Any) -> None:
    await agent.start(allow_shell=True, kill_grace=1)
    execution_id = await gateway.execute(gateway.order("shell", {"script": "echo go; sleep 30"}))
    await gateway.wait(lambda: gateway.output(execution_id) == b"go\n", what="output")
    await gateway.cancel(execution_id)
    await gateway.cancel("x_not_running")  # ignored
    finished = await gateway.final(execution_id, within=5)
    assert finished["status"] == "cancelled"
    assert finished["signal"] == signal.SIGTERM


async def test_five_mib_of_output_is_truncated_at_one_with_the_digest_of_all(
    gateway: Any, agent: Any
) -> None:
    await agent.start(allow_shell=True)
    size = 5 * 1024 * 1024
    script = f"yes 0123456789abcdef | head -c {size}"
    execution_id = await gateway.execute(gateway.order("shell", {"script": script}))
    finished = await gateway.final(execution_id, within=30)
    expected = (b"0123456789abcdef\n" * (size // 17 + 1))[:size]
    assert finished["status"] == "succeeded"
    assert finished["stdout"] == {
        "bytes": size,
        "sha256": hashlib.sha256(expected).hexdigest(),
        "truncated": True,
    }
    kept = gateway.output(execution_id)
    assert kept == expected[: 1024 * 1024]
    chunks = [r for r in gateway.reports(execution_id) if r["type"] == "output"]
    assert all(len(r["data"]) <= 21848 for r in chunks)


async def test_non_utf8_output_round_trips(gateway: Any, agent: Any) -> None:
    await agent.start(allow_shell=True)
    script = r"printf '\377\376\000abc\351\n'; printf '\200' >&2"
    execution_id = await gateway.execute(gateway.order("shell", {"script": script}))
    await gateway.final(execution_id)
    assert gateway.output(execution_id) == b"\xff\xfe\x00abc\xe9\n"
    assert gateway.output(execution_id, "stderr") == b"\x80"


async def test_forged_replayed_expired_misaddressed_and_unknown_versions_are_refused(
    gateway: Any, agent: Any, tmp_path: Path, validate: Any
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    await agent.start(allow_shell=True)
    ran = tmp_path / "ran"
    script = f"echo once >> {ran}"

    async def refusal(order: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        execution_id = await gateway.execute(order, **kwargs)
        report: dict[str, Any] = await gateway.final(execution_id)
        assert report["type"] == "refused", report
        validate("refused", report)
        return report

    forged = await refusal(
        gateway.order("shell", {"script": script}), key=Ed25519PrivateKey.generate()
    )
    assert forged["code"] == "bad_signature"
    past = time.time() - 10
    expired = await refusal(gateway.order("shell", {"script": script}, expires_at=past))
    assert expired["code"] == "expired"
    elsewhere = await refusal(gateway.order("shell", {"script": script}, node_id="n_other"))
    assert elsewhere["code"] == "misaddressed"
    assert "n_other" in elsewhere["reason"]
    newer = await refusal(gateway.order("shell", {"script": script}, v=2))
    assert newer["code"] == "unsupported_version"
    broken = gateway.order("shell", {"script": script})
    del broken["timeout"]
    assert (await refusal(broken))["code"] == "invalid"
    # A message whose order was changed after signing.
    tampered = gateway.execute_message(gateway.order("shell", {"script": "true"}))
    tampered["order"] = tampered["order"].replace("true", script)
    await gateway.send(tampered)
    assert (await gateway.final(tampered["execution_id"]))["code"] == "bad_signature"
    assert not ran.exists()

    order = gateway.order("shell", {"script": script})
    execution_id = await gateway.execute(order)
    assert (await gateway.final(execution_id))["status"] == "succeeded"
    await gateway.execute(order)  # the same order again (a redelivery)
    await gateway.wait(
        lambda: [r for r in gateway.reports(execution_id) if r.get("code") == "replayed"],
        what="replayed",
    )
    # … also after the agent restarts: accepted ids are kept on disk.
    assert await agent.stop() == 0
    # The order must reach the restarted agent, not the old connection while it closes.
    await gateway.wait(lambda: not gateway.connected, 20.0, "the old connection ended")
    await agent.start()
    await gateway.execute(order)
    await gateway.wait(
        lambda: len([r for r in gateway.reports(execution_id) if r.get("code") == "replayed"]) == 2,
        what="replayed after a restart",
    )
    assert ran.read_text() == "once\n"


async def test_kinds_not_enabled_are_refused(gateway: Any, agent: Any) -> None:
    await agent.start()  # nothing enabled: the default
    for kind, spec in (
        ("shell", {"script": "true"}),
        ("service", {"action": "list"}),
        ("logs", {"path": "/var/log/syslog", "lines": 1}),
    ):
        refused = await gateway.final(await gateway.execute(gateway.order(kind, spec)))
        assert refused["code"] == "disabled", refused
        assert f"allow_{kind} = false" in refused["reason"]


async def test_shell_users_must_be_allowed_and_switching_needs_root(
    gateway: Any, agent: Any
) -> None:
    await agent.start(allow_shell=True, allowed_users=["nobody"])
    refused = await gateway.final(
        await gateway.execute(gateway.order("shell", {"script": "id", "user": "daemon"}))
    )
    assert refused["code"] == "not_allowed"
    finished = await gateway.final(
        await gateway.execute(gateway.order("shell", {"script": "id -un", "user": "nobody"}))
    )
    if os.geteuid() == 0:
        assert finished["status"] == "succeeded"
        assert gateway.output(finished["execution_id"]) == b"nobody\n"
    else:
        assert finished["status"] == "failed"
        assert "cannot run as nobody" in finished["error"]
        assert finished["exit_code"] is None


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    root.mkdir()
    (root / "app.log").write_bytes(b"".join(b"line %d\n" % i for i in range(1, 11)))
    (tmp_path / "secret.txt").write_text("secret\n")
    (root / "escape.log").symlink_to(tmp_path / "secret.txt")
    (root / "inside.log").symlink_to(root / "app.log")
    return root


async def test_logs_refuse_paths_outside_the_roots(
    gateway: Any, agent: Any, log_root: Path
) -> None:
    await agent.start(allow_logs=True, log_roots=[str(log_root)])
    for path in (
        f"{log_root}/../secret.txt",
        f"{log_root}/escape.log",
        "/etc/passwd",
        "relative/app.log",
        f"{log_root}x/app.log",
    ):
        refused = await gateway.final(
            await gateway.execute(gateway.order("logs", {"path": path, "lines": 5}))
        )
        assert refused["code"] == "not_allowed", (path, refused)
    # A link that stays inside is fine.
    finished = await gateway.final(
        await gateway.execute(gateway.order("logs", {"path": f"{log_root}/inside.log", "lines": 2}))
    )
    assert gateway.output(finished["execution_id"]) == b"line 9\nline 10\n"


async def test_logs_tail_and_follow_a_file(gateway: Any, agent: Any, log_root: Path) -> None:
    await agent.start(allow_logs=True, log_roots=[str(log_root)])
    app = log_root / "app.log"
    finished = await gateway.final(
        await gateway.execute(gateway.order("logs", {"path": str(app), "lines": 3}))
    )
    assert finished["status"] == "succeeded"
    assert finished["exit_code"] == 0
    assert gateway.output(finished["execution_id"]) == b"line 8\nline 9\nline 10\n"

    order = gateway.order("logs", {"path": str(app), "lines": 1, "follow": True}, timeout=4)
    execution_id = await gateway.execute(order)
    await gateway.wait(lambda: gateway.output(execution_id) == b"line 10\n", what="the tail")
    with app.open("ab") as file:
        file.write(b"appended\n")
    await gateway.wait(
        lambda: gateway.output(execution_id).endswith(b"appended\n"), what="appended"
    )
    # Rotation: the file is renamed and a new one takes its place.
    app.rename(log_root / "app.log.1")
    app.write_bytes(b"fresh\n")
    await gateway.wait(lambda: gateway.output(execution_id).endswith(b"fresh\n"), what="rotated")
    finished = await gateway.final(execution_id)
    assert finished["status"] == "timed_out"
    assert gateway.output(execution_id) == b"line 10\nappended\nfresh\n"


async def test_logs_cancel_ends_a_follow(gateway: Any, agent: Any, log_root: Path) -> None:
    await agent.start(allow_logs=True, log_roots=[str(log_root)])
    order = gateway.order("logs", {"path": str(log_root / "app.log"), "lines": 0, "follow": True})
    execution_id = await gateway.execute(order)
    await gateway.wait(
        lambda: [r for r in gateway.reports(execution_id) if r["type"] == "started"], what="start"
    )
    await gateway.cancel(execution_id)
    assert (await gateway.final(execution_id, within=5))["status"] == "cancelled"


RECORDER = """#!/bin/sh
printf '%s\\n' "$*" >> "{log}"
echo "recorded $*"
"""


@pytest.fixture
def recording_path(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A ``systemctl`` and a ``journalctl`` that record their arguments, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for name in ("systemctl", "journalctl"):
        program = bin_dir / name
        program.write_text(RECORDER.format(log=calls))
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return calls, {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


async def test_service_actions_run_the_systemctl_command_lines(
    gateway: Any, agent: Any, recording_path: tuple[Path, dict[str, str]]
) -> None:
    calls, env = recording_path
    agent.env.update(env)
    await agent.start(allow_service=True, allow_logs=True, service_units=["nginx.service", "app-*"])
    expected = []
    for spec, line in (
        ({"action": "list"}, "list-units --type=service --all --no-pager --plain"),
        ({"action": "status", "unit": "nginx"}, "--no-pager --lines=20 status nginx.service"),
        ({"action": "restart", "unit": "nginx.service"}, "--no-pager restart nginx.service"),
        ({"action": "enable", "unit": "app-worker@1"}, "--no-pager enable app-worker@1.service"),
    ):
        finished = await gateway.final(await gateway.execute(gateway.order("service", spec)))
        assert finished["status"] == "succeeded", finished
        assert gateway.output(finished["execution_id"]) == f"recorded {line}\n".encode()
        expected.append(line)
    refused = await gateway.final(
        await gateway.execute(gateway.order("service", {"action": "stop", "unit": "sshd"}))
    )
    assert refused["code"] == "not_allowed"
    assert "sshd.service" in refused["reason"]
    finished = await gateway.final(
        await gateway.execute(gateway.order("logs", {"unit": "nginx", "lines": 50}))
    )
    assert finished["status"] == "succeeded"
    expected.append("-u nginx.service -n 50 --no-pager -o short-iso")
    assert calls.read_text().splitlines() == expected


async def test_no_systemctl_is_unavailable(gateway: Any, agent: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    agent.env["PATH"] = str(empty)
    await agent.start(allow_service=True, allow_logs=True)
    refused = await gateway.final(
        await gateway.execute(gateway.order("service", {"action": "list"}))
    )
    assert refused["code"] == "unavailable"
    assert "systemctl" in refused["reason"]
    refused = await gateway.final(
        await gateway.execute(gateway.order("logs", {"unit": "x", "lines": 1}))
    )
    assert refused["code"] == "unavailable"


def _systemd_is_pid_1() -> bool:
    try:
        return (
            Path("/proc/1/comm").read_text().strip() == "systemd"
            and Path("/run/systemd/system").is_dir()
        )
    except OSError:
        return False


@pytest.mark.skipif(not _systemd_is_pid_1(), reason="systemd is not PID 1 on this machine")
async def test_service_list_on_real_systemd(gateway: Any, agent: Any) -> None:
    assert shutil.which("systemctl")
    await agent.start(allow_service=True)
    finished = await gateway.final(
        await gateway.execute(gateway.order("service", {"action": "list"}))
    )
    assert finished["status"] == "succeeded", finished
    assert b".service" in gateway.output(finished["execution_id"])


async def test_reports_survive_kill_9_and_are_sent_again_until_acknowledged(
    gateway: Any, agent: Any, tmp_path: Path, validate: Any
) -> None:
    gateway.ack_reports = False
    await agent.start(allow_shell=True)
    pid_file = tmp_path / "pid"
    execution_id = await gateway.execute(
        gateway.order("shell", {"script": f"echo $$ > {pid_file}; echo one; sleep 60"})
    )
    await gateway.wait(lambda: gateway.output(execution_id) == b"one\n", what="output")
    # Not acknowledged: a new connection sends them again, first.
    before = len(gateway.reports(execution_id))
    await gateway.drop()
    await gateway.wait(lambda: len(gateway.reports(execution_id)) >= 2 * before, what="resent")
    # The agent dies; its execution was cut short and is not run again.
    await agent.stop(signal.SIGKILL)
    gateway.ack_reports = True
    connections = gateway.connections
    mark = len(gateway.messages)
    await agent.start()
    finished = await gateway.final(execution_id)
    assert finished["status"] == "failed"
    assert finished["error"] == "the agent restarted while it ran"
    assert finished["exit_code"] is None
    validate("finished", finished)
    after_restart = gateway.messages[mark:]
    assert gateway.connections == connections + 1
    first = next(i for i, m in enumerate(after_restart) if m.get("execution_id") == execution_id)
    assert all(m["type"] != "heartbeat" for m in after_restart[:first])
    # The shell it started is gone too (killed as a leftover of the execution).
    await gateway.wait(lambda: not _alive(int(pid_file.read_text())), 5, "leftover killed")
    # Acknowledged: nothing is kept any more, nothing is sent again.
    await gateway.wait(lambda: not list((agent.state / "reports").iterdir()), 5, "spool empty")
    count = len(gateway.reports(execution_id))
    await gateway.drop()
    await gateway.wait(lambda: gateway.connections == connections + 2, what="reconnected")
    await asyncio.sleep(0.5)
    assert len(gateway.reports(execution_id)) == count


async def test_heartbeats_keep_flowing_during_a_flood_of_output(gateway: Any, agent: Any) -> None:
    await agent.start(allow_shell=True, max_output_bytes=8 * 1024 * 1024)
    await gateway.wait(lambda: len(gateway.heartbeats()) >= 2, what="heartbeats")
    gateway.report_delay = 0.003  # the gateway reads reports slower than they are produced
    size = 8 * 1024 * 1024
    script = (
        f"head -c {size} /dev/zero | tr '\\0' x & head -c {size} /dev/zero | tr '\\0' y >&2; wait"
    )
    execution_id = await gateway.execute(gateway.order("shell", {"script": script}))
    finished = await gateway.final(execution_id, within=60)
    assert finished["stdout"]["bytes"] == size
    assert not finished["stdout"]["truncated"]
    times = [
        at
        for message, at in zip(gateway.messages, gateway.arrivals, strict=True)
        if message["type"] == "heartbeat"
    ]
    reports = [
        at
        for message, at in zip(gateway.messages, gateway.arrivals, strict=True)
        if message.get("execution_id") == execution_id
    ]
    flood = (reports[0], reports[-1])
    assert flood[1] - flood[0] > 1.5, "the flood was too short to tell"
    during = [t for t in times if flood[0] - 1.0 <= t <= flood[1] + 1.0]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert gaps
    assert max(gaps) < 2.5, gaps

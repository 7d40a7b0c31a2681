"""Remote control: orders in, reports out.

For each ``execute``: the order is checked (:mod:`sm_agent.orders`), the id
looked up among those accepted before, the node's policy applied
(:mod:`sm_agent.policy`) and the concurrency bound; a refusal becomes a
``refused`` report. An accepted id is recorded on disk
(:mod:`sm_agent.accepted`) before the run starts (:mod:`sm_agent.runner`).
Every report is kept by :mod:`sm_agent.reports` before the link sends it.

A ``refused`` with code ``replayed`` is informational: it is sent on the
current connection only, never kept (the execution's own reports, seq 0
included, may still wait for acknowledgement under the same id).

After a crash the next start finds executions that were cut short (accepted,
no last report) and reports them ``failed`` with the error "the agent
restarted while it ran" (at most once: they are not run again); a process
group they left behind is killed when it is still the one that was started.
When the agent stops (SIGTERM), running executions are stopped the same way
as a cancel and reported ``failed`` ("the agent stopped while it ran").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from sm_agent.accepted import AcceptedIds
from sm_agent.orders import Order, Refusal, check_order, load_public_key, parse_execute
from sm_agent.policy import Plan, Policy, plan, resolve_log_file
from sm_agent.reports import ReportSpool
from sm_agent.runner import Capture, Outcome, Stop, run_process, tail_file

RESTARTED = "the agent restarted while it ran"
STOPPED = "the agent stopped while it ran"

log = logging.getLogger(__name__)


def _now() -> float:
    return round(time.time(), 3)


class Control:
    def __init__(
        self,
        state_dir: Path,
        *,
        node_id: str,
        command_public_key: str,
        policy: Policy,
        max_output_bytes: int = 1024 * 1024,
        max_executions: int = 8,
        kill_grace: float = 5.0,
        version: int = 1,
    ) -> None:
        self._state_dir = state_dir
        self._node_id = node_id
        self._key = load_public_key(command_public_key)
        self._policy = policy
        self._max_output = max_output_bytes
        self._max_executions = max_executions
        self._kill_grace = kill_grace
        self.version = version
        self.reports = ReportSpool(state_dir / "reports")
        self.accepted = AcceptedIds(state_dir / "accepted")
        self._running: dict[str, tuple[asyncio.Task[None], Stop]] = {}
        # Reports sent on this connection only (replayed refusals).
        self.ephemeral: list[bytes] = []
        self._recover()

    @property
    def running(self) -> int:
        return len(self._running)

    # ------------------------------------------------------------ from the gateway

    def execute(self, message: dict[str, Any]) -> None:
        """An ``execute`` message (BadMessage when it breaks the schema)."""
        execute = parse_execute(message, self.version)
        execution_id = execute.execution_id
        if execution_id in self._running or execution_id in self.accepted:
            self._refuse_replayed(execution_id)
            return
        if execution_id in self.reports:
            # Refused before, the refusal not acknowledged yet: it is sent again anyway.
            log.debug("execution %s: its refusal is still being delivered", execution_id)
            return
        try:
            order = check_order(execute, self._key, self._node_id, time.time())
            what = plan(self._policy, order)
            if len(self._running) >= self._max_executions:
                raise Refusal(
                    "busy",
                    f"{len(self._running)} executions are running (max_executions = "
                    f"{self._max_executions})",
                )
            if self.reports.full():
                raise Refusal("busy", "too many reports wait for the core to acknowledge them")
        except Refusal as refusal:
            log.info("refused execution %s: %s (%s)", execution_id, refusal.reason, refusal.code)
            self._report(
                {
                    "type": "refused",
                    "execution_id": execution_id,
                    "seq": 0,
                    "at": _now(),
                    "code": refusal.code,
                    "reason": refusal.reason,
                }
            )
            return
        try:
            self.accepted.add(execution_id, order.expires_at)
        except OSError as exc:
            log.error("cannot record execution %s as accepted: %s", execution_id, exc)
            self._report(
                {
                    "type": "refused",
                    "execution_id": execution_id,
                    "seq": 0,
                    "at": _now(),
                    "code": "unavailable",
                    "reason": f"the agent cannot record the execution on disk: {exc.strerror}",
                }
            )
            return
        stop = Stop()
        task = asyncio.create_task(self._run(order, what, stop), name=f"execution {execution_id}")
        self._running[execution_id] = (task, stop)
        task.add_done_callback(lambda _: self._running.pop(execution_id, None))

    def cancel(self, execution_id: str) -> None:
        entry = self._running.get(execution_id)
        if entry is not None:
            log.info("cancelling execution %s", execution_id)
            entry[1].set("cancelled")

    def acknowledge(self, execution_id: str, upto: int) -> None:
        self.reports.acknowledge(execution_id, upto)

    async def close(self) -> None:
        """Stop what runs (reported failed: the agent stopped) and wait for it."""
        for _, stop in self._running.values():
            stop.set("failed", STOPPED)
        tasks = [task for task, _ in self._running.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ reports

    def _report(self, report: dict[str, Any]) -> None:
        report = {"v": self.version, **report}
        try:
            self.reports.append(report)
        except OSError as exc:
            log.error("cannot keep a report of %s on disk: %s", report["execution_id"], exc)

    def _refuse_replayed(self, execution_id: str) -> None:
        reason = "this execution was accepted before; it runs at most once"
        log.info("refused execution %s: replayed", execution_id)
        report = {
            "v": self.version,
            "type": "refused",
            "execution_id": execution_id,
            "seq": 0,
            "at": _now(),
            "code": "replayed",
            "reason": reason,
        }
        self.ephemeral.append(json.dumps(report, separators=(",", ":")).encode())
        if self.reports.listener is not None:
            self.reports.listener()

    # ------------------------------------------------------------ running

    async def _run(self, order: Order, what: Plan, stop: Stop) -> None:
        execution_id = order.execution_id
        seq = 0

        def output(stream: str, offset: int, data: bytes) -> None:
            nonlocal seq
            seq += 1
            self._report(
                {
                    "type": "output",
                    "execution_id": execution_id,
                    "seq": seq,
                    "at": _now(),
                    "stream": stream,
                    "offset": offset,
                    "data": base64.b64encode(data).decode(),
                }
            )

        def started(pid: int | None, at: float) -> None:
            report: dict[str, Any] = {
                "type": "started",
                "execution_id": execution_id,
                "seq": 0,
                "at": round(at, 3),
            }
            if pid is not None:
                report["pid"] = pid
            self._report(report)

        stdout = Capture("stdout", self._max_output, output)
        stderr = Capture("stderr", self._max_output, output)
        log.info("running execution %s (%s)", execution_id, order.kind)
        try:
            if what.file is not None:
                assert order.logs is not None
                logs = order.logs
                path = logs.path or ""

                def reopen() -> str:
                    try:
                        return resolve_log_file(path, self._policy.log_roots)
                    except Refusal as exc:
                        raise OSError(exc.reason) from None

                outcome = await tail_file(
                    what.file,
                    lines=logs.lines,
                    follow=logs.follow,
                    timeout=order.timeout,
                    stop=stop,
                    stdout=stdout,
                    reopen=reopen,
                    on_start=lambda at: started(None, at),
                )
            else:
                assert what.argv is not None
                # The agent's own settings (an enrollment key, say) are not the command's.
                env = {k: v for k, v in os.environ.items() if not k.startswith("SM_AGENT_")}
                cwd = str(self._state_dir)
                if order.shell is not None:
                    env.update(order.shell.env)
                    cwd = order.shell.cwd or cwd
                outcome = await run_process(
                    what.argv,
                    env=env,
                    cwd=cwd,
                    user=what.user,
                    timeout=order.timeout,
                    kill_grace=self._kill_grace,
                    stop=stop,
                    stdout=stdout,
                    stderr=stderr,
                    on_start=started,
                )
        except Exception as exc:  # the run must always end with a report
            log.exception("execution %s failed inside the agent", execution_id)
            at = time.time()
            outcome = Outcome("failed", None, at, at, error=f"agent error: {exc}"[:1024])
        finished: dict[str, Any] = {
            "type": "finished",
            "execution_id": execution_id,
            "seq": seq + 1,
            "at": _now(),
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            "started_at": round(outcome.started_at, 3),
            "ended_at": round(outcome.ended_at, 3),
            "stdout": stdout.summary(),
            "stderr": stderr.summary(),
        }
        if outcome.signal is not None:
            finished["signal"] = outcome.signal
        if outcome.error is not None:
            finished["error"] = outcome.error[:1024]
        self._report(finished)
        self.accepted.mark_done(execution_id)
        log.info("execution %s %s (exit %s)", execution_id, outcome.status, outcome.exit_code)

    # ------------------------------------------------------------ after a crash

    def _recover(self) -> None:
        for execution_id in self.reports.unfinished():
            reports = self.reports.read_all(execution_id)
            self._finish_interrupted(execution_id, reports)
        for execution_id in self.accepted.unfinished():
            if execution_id not in self.reports:
                # Accepted, nothing reported (cut short before it started or before its
                # first report, or all of its reports were acknowledged).
                self._finish_interrupted(execution_id, [])
            self.accepted.mark_done(execution_id)

    def _finish_interrupted(self, execution_id: str, reports: list[dict[str, Any]]) -> None:
        now = _now()
        started = next((r for r in reports if r.get("type") == "started"), None)
        last_seq = self.reports.last_seq(execution_id)
        if started is None and last_seq < 0:
            started = {"type": "started", "execution_id": execution_id, "seq": 0, "at": now}
            self._report(started)
            last_seq = 0
        if started is not None and isinstance(started.get("pid"), int):
            _kill_leftover(int(started["pid"]), float(started.get("at", 0)))
        kept = {"stdout": hashlib.sha256(), "stderr": hashlib.sha256()}
        sizes = {"stdout": 0, "stderr": 0}
        for report in reports:
            if report.get("type") == "output":
                data = base64.b64decode(report["data"])
                kept[report["stream"]].update(data)
                sizes[report["stream"]] += len(data)
        ended = max((float(r.get("at", 0)) for r in reports), default=now)
        started_at = float(started["at"]) if started is not None else ended
        log.warning("execution %s was cut short by an agent restart", execution_id)
        self._report(
            {
                "type": "finished",
                "execution_id": execution_id,
                "seq": last_seq + 1,
                "at": now,
                "status": "failed",
                "exit_code": None,
                "started_at": started_at,
                "ended_at": max(ended, started_at),
                "stdout": {
                    "bytes": sizes["stdout"],
                    "sha256": kept["stdout"].hexdigest(),
                    "truncated": sizes["stdout"] >= self._max_output,
                },
                "stderr": {
                    "bytes": sizes["stderr"],
                    "sha256": kept["stderr"].hexdigest(),
                    "truncated": sizes["stderr"] >= self._max_output,
                },
                "error": RESTARTED,
            }
        )


def _kill_leftover(pid: int, started_at: float) -> None:
    """Kill the process group an interrupted execution started, if it is still that one."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started_at) > 2.0 or os.getpgid(pid) != pid:
            return
    except (psutil.Error, OSError):
        return
    log.warning("killing process group %d left behind by an interrupted execution", pid)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)

"""The node decides: which kinds run here, as whom, on which units and files.

Everything here comes from the agent's own configuration; nothing in an
order can widen it. A check that fails raises :class:`~sm_agent.orders.Refusal`
(``disabled``, ``not_allowed`` or ``unavailable``) with a reason naming the
setting to change.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from sm_agent.orders import Order, Refusal

SYSTEMD_RUNNING = Path("/run/systemd/system")
UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".mount",
    ".automount",
    ".path",
    ".slice",
    ".scope",
    ".swap",
    ".device",
)


@dataclass(frozen=True)
class Policy:
    allow_shell: bool = False
    allow_service: bool = False
    allow_logs: bool = False
    shell_user: str | None = None
    allowed_users: tuple[str, ...] = ()
    service_units: tuple[str, ...] = ("*",)
    log_roots: tuple[str, ...] = ("/var/log",)
    # Where systemd keeps its runtime state when it is PID 1 (a test may point elsewhere).
    systemd_running: Path = SYSTEMD_RUNNING


@dataclass(frozen=True)
class Plan:
    """What an accepted order runs: a program's argv, or a file to tail."""

    argv: tuple[str, ...] | None = None
    # For shell: who runs it (None: the agent's own user).
    user: str | None = None
    # For logs of a file: the resolved path.
    file: str | None = None


def unit_name(unit: str) -> str:
    """A unit name with ``.service`` added when it names no type."""
    return unit if unit.endswith(UNIT_SUFFIXES) else unit + ".service"


def _enabled(policy: Policy, kind: str) -> None:
    allowed = {
        "shell": policy.allow_shell,
        "service": policy.allow_service,
        "logs": policy.allow_logs,
    }[kind]
    if not allowed:
        raise Refusal("disabled", f"{kind} is not enabled on this node (allow_{kind} = false)")


def _is_system_systemctl(path: str) -> bool:
    """True for the real systemctl (a compiled program), False for a script standing in."""
    try:
        with open(path, "rb") as program:
            return program.read(4) == b"\x7fELF"
    except OSError:
        return True


def resolve_log_file(path: str, roots: tuple[str, ...]) -> str:
    """The real path of ``path`` if it lies under one of ``roots`` (after links and ``..``)."""
    if not path.startswith("/"):
        raise Refusal("not_allowed", f"the log path {path!r} is not absolute")
    if "\x00" in path:
        raise Refusal("not_allowed", "the log path holds a NUL character")
    real = os.path.realpath(path)
    for root in roots:
        real_root = os.path.realpath(root)
        if real == real_root or real.startswith(real_root.rstrip("/") + "/"):
            return real
    shown = f"{path} (really {real})" if real != path else path
    raise Refusal(
        "not_allowed",
        f"{shown} is outside the log roots this node allows ({', '.join(roots) or 'none'})",
    )


def plan(policy: Policy, order: Order) -> Plan:
    """Check ``order`` against the node's configuration; what it will run."""
    _enabled(policy, order.kind)
    if order.shell is not None:
        shell = order.shell
        user = policy.shell_user
        if shell.user is not None:
            if shell.user not in policy.allowed_users:
                raise Refusal(
                    "not_allowed",
                    f"this node does not let orders run as {shell.user!r} "
                    f"(allowed_users: {', '.join(policy.allowed_users) or 'none'})",
                )
            user = shell.user
        argv = ("/bin/sh", "-c", shell.script) if shell.script is not None else shell.argv
        return Plan(argv=argv, user=user)
    if order.service is not None:
        service = order.service
        systemctl = shutil.which("systemctl")
        if systemctl is None:
            raise Refusal("unavailable", "no systemctl on this node (not on the agent's PATH)")
        if not policy.systemd_running.is_dir() and _is_system_systemctl(systemctl):
            raise Refusal(
                "unavailable",
                f"systemd is not running on this node ({policy.systemd_running} is missing)",
            )
        if service.action == "list":
            return Plan(
                argv=(systemctl, "list-units", "--type=service", "--all", "--no-pager", "--plain")
            )
        if service.unit is None:
            raise Refusal("invalid", f"service action {service.action} needs a unit")
        unit = unit_name(service.unit)
        if not any(fnmatchcase(unit, glob) for glob in policy.service_units):
            raise Refusal(
                "not_allowed",
                f"this node does not allow service control of {unit} "
                f"(service_units: {', '.join(policy.service_units) or 'none'})",
            )
        if service.action == "status":
            return Plan(argv=(systemctl, "--no-pager", "--lines=20", "status", unit))
        return Plan(argv=(systemctl, "--no-pager", service.action, unit))
    logs = order.logs
    assert logs is not None  # parse_order guarantees one part per kind
    if logs.path is not None:
        return Plan(file=resolve_log_file(logs.path, policy.log_roots))
    assert logs.unit is not None
    journalctl = shutil.which("journalctl")
    if journalctl is None:
        raise Refusal("unavailable", "no journalctl on this node (not on the agent's PATH)")
    command = [journalctl, "-u", unit_name(logs.unit), "-n", str(logs.lines)]
    command += ["--no-pager", "-o", "short-iso"]
    if logs.follow:
        command.append("-f")
    return Plan(argv=tuple(command))

"""``sm-agent``: enroll this node, then keep it connected.

    sm-agent enroll --server https://core:8101 --key sme1.… [--config PATH] [--state-dir DIR]
    sm-agent run [--config PATH] [--state-dir DIR]

``run`` enrolls first when the node is not enrolled yet and a key and server
are configured. Exit status: 0 stopped cleanly (SIGTERM, SIGINT), 1 error,
2 usage, 3 the core refuses this node's credential (enroll again).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from sm_agent import __version__
from sm_agent.backoff import Backoff
from sm_agent.collectors import Sampler
from sm_agent.control import Control
from sm_agent.facts import boot_id, gather_facts
from sm_agent.heartbeat import Heartbeats, SequenceNumbers
from sm_agent.link import CredentialRefused, Link, UnusableGatewayUrl
from sm_agent.policy import Policy
from sm_agent.settings import AgentSettings, SettingsError, load_settings, remove_enrollment_key
from sm_agent.spool import Spool, SpoolError
from sm_agent.state import StateDir, StateError
from sm_agent.trust import MalformedKey, TrustError, verified_context

EXIT_ERROR = 1
EXIT_REFUSED = 3

log = logging.getLogger("sm_agent")


class Failure(Exception):
    """A reason to stop with a message and an exit status."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML configuration file")
    common.add_argument("--state-dir", dest="state_dir", help="where credential and CA are kept")
    common.add_argument("--log-level", dest="log_level", help="DEBUG, INFO, WARNING or ERROR")
    common.add_argument("--server", help="the core's URL, e.g. https://core.example.net:8101")
    common.add_argument("--key", dest="enrollment_key", help="the enrollment key (sme1.…)")
    common.add_argument(
        "--gateway-url",
        dest="gateway_urls",
        action="append",
        help="a gateway to connect to (wss://…/agent/ws); repeat to try several in turn",
    )
    common.add_argument(
        "--buffer-max-entries",
        dest="buffer_max_entries",
        help="heartbeats the offline buffer keeps at most (default 20000)",
    )
    common.add_argument(
        "--buffer-max-bytes",
        dest="buffer_max_bytes",
        help="bytes the offline buffer keeps at most (default 16777216)",
    )

    control = common.add_argument_group("remote control (off unless enabled)")
    for kind, what in (
        ("shell", "shell commands"),
        ("service", "service control (systemctl)"),
        ("logs", "log reading (journald, files under the log roots)"),
    ):
        control.add_argument(
            f"--allow-{kind}",
            dest=f"allow_{kind}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"let the core run {what} here",
        )
    control.add_argument("--shell-user", dest="shell_user", help="run shell commands as this user")
    control.add_argument(
        "--allowed-user",
        dest="allowed_users",
        action="append",
        help="a user an order may name (repeat)",
    )
    control.add_argument(
        "--service-unit",
        dest="service_units",
        action="append",
        help="a unit (glob) service control may touch (repeat; default every unit)",
    )
    control.add_argument(
        "--log-root",
        dest="log_roots",
        action="append",
        help="a directory whose files logs may read (repeat; default /var/log)",
    )
    control.add_argument(
        "--max-output-bytes",
        dest="max_output_bytes",
        help="output kept and sent per stream (default 1048576)",
    )
    control.add_argument(
        "--max-executions", dest="max_executions", help="executions at once (default 8)"
    )
    control.add_argument(
        "--kill-grace", dest="kill_grace", help="seconds from SIGTERM to SIGKILL (default 5)"
    )

    parser = argparse.ArgumentParser(prog="sm-agent", description="Server Manager node agent")
    parser.add_argument("--version", action="version", version=f"sm-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("enroll", parents=[common], help="enroll this node with the core")
    commands.add_parser("run", parents=[common], help="connect to the core and report")
    return parser


def _forget_key(settings: AgentSettings) -> None:
    """The enrollment key is no longer needed once the node holds its credential."""
    if settings.enrollment_key_source == "file":
        if remove_enrollment_key(settings.config_path):
            log.info("removed enrollment_key from %s", settings.config_path)
    elif settings.enrollment_key_source == "env":
        log.warning("enrolled: remove SM_AGENT_ENROLLMENT_KEY from this node's environment")


def _enroll(settings: AgentSettings, state: StateDir) -> None:
    # Imported here: urllib and the enrollment code are not needed by a running agent.
    from sm_agent.enrollment import EnrollmentError, enroll

    if not settings.enrollment_key:
        raise Failure("no enrollment key: pass --key or set enrollment_key in the configuration")
    if not settings.server:
        raise Failure("no core URL: pass --server or set server in the configuration")
    try:
        identity = enroll(settings.server, settings.enrollment_key, state)
    except (MalformedKey, TrustError, EnrollmentError, StateError) as exc:
        raise Failure(f"enrollment failed: {exc}") from exc
    _forget_key(settings)
    print(f"enrolled: node {identity.node_id}, gateway {identity.gateway_url}")


async def _hold_link(settings: AgentSettings, state: StateDir) -> None:
    identity = state.identity()
    gateway_urls = settings.gateway_urls or (identity.gateway_url,)
    for url in gateway_urls:
        if not url.startswith("wss://"):
            raise Failure(f"the gateway URL must be wss://…, not {url!r}")
    node_boot = boot_id()
    try:
        spool = Spool(
            state.spool_dir,
            max_entries=settings.buffer_max_entries,
            max_bytes=settings.buffer_max_bytes,
        )
    except SpoolError as exc:
        raise Failure(str(exc)) from exc
    control = Control(
        state.root,
        node_id=identity.node_id,
        command_public_key=identity.command_public_key,
        policy=Policy(
            allow_shell=settings.allow_shell,
            allow_service=settings.allow_service,
            allow_logs=settings.allow_logs,
            shell_user=settings.shell_user,
            allowed_users=settings.allowed_users,
            service_units=settings.service_units,
            log_roots=settings.log_roots,
        ),
        max_output_bytes=settings.max_output_bytes,
        max_executions=settings.max_executions,
        kill_grace=settings.kill_grace,
    )
    enabled = [k for k in ("shell", "service", "logs") if getattr(settings, f"allow_{k}")]
    log.info(
        "remote control: %s; %d unacknowledged execution reports kept",
        ", ".join(enabled) + " enabled" if enabled else "nothing enabled",
        control.reports.unacknowledged(),
    )
    link = Link(
        gateway_urls=gateway_urls,
        credential=state.credential(),
        ssl_context=verified_context(state.ca_file),
        facts=gather_facts,
        heartbeats=Heartbeats(
            node_boot, SequenceNumbers(state.sequence_file, node_boot), Sampler()
        ),
        backoff=Backoff(),
        spool=spool,
        interval=identity.heartbeat_interval,
        control=control,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "node %s: connecting to %s (%d heartbeats buffered)",
        identity.node_id,
        ", ".join(gateway_urls),
        len(spool),
    )
    try:
        await link.run(stop)
    except CredentialRefused as exc:
        raise Failure(f"{exc}; enroll this node again", EXIT_REFUSED) from exc
    except UnusableGatewayUrl as exc:
        raise Failure(str(exc)) from exc
    finally:
        await control.close()
        spool.close()
    log.info(
        "stopped after %d heartbeats sent, %d acknowledged; %d kept in the offline buffer",
        link.heartbeats_sent,
        link.heartbeats_acked,
        len(spool),
    )


def _run(settings: AgentSettings, state: StateDir) -> None:
    if not state.enrolled():
        if not (settings.enrollment_key and settings.server):
            raise Failure(
                f"this node is not enrolled (no credential in {state.root}): run "
                "'sm-agent enroll --server URL --key KEY' or configure server and enrollment_key"
            )
        _enroll(settings, state)
    elif settings.enrollment_key_source == "file":
        _forget_key(settings)
    try:
        asyncio.run(_hold_link(settings, state))
    except (StateError, OSError) as exc:
        raise Failure(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            {k: v for k, v in vars(args).items() if k != "command" and v is not None}
        )
    except SettingsError as exc:
        print(f"sm-agent: {exc}", file=sys.stderr)
        return EXIT_ERROR
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    state = StateDir(settings.state_dir)
    try:
        if args.command == "enroll":
            _enroll(settings, state)
        else:
            _run(settings, state)
    except (Failure, SettingsError) as exc:
        print(f"sm-agent: {exc}", file=sys.stderr)
        return exc.status if isinstance(exc, Failure) else EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())

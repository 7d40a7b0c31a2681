"""The services image's health check (its Dockerfile ``HEALTHCHECK``).

One image runs every service (``smctl serve registry|metrics|commands|gateway|
worker|api``), so the check finds out what this container runs from the
``smctl serve`` process's own command line (and the ``SM_HOST``, ``SM_PORT``,
``SM_TLS`` variables ``serve`` also reads), then asks it:

* an HTTP service: ``GET /readyz`` on its port answers 200 (its database and
  Redis are reachable); the certificate is not verified, since this asks the
  process in this very container whether it is ready, not whom to trust;
* the worker, the metrics ingest and the commands consumer (no HTTP
  listener): their health key exists in ``SM_REDIS_URL`` (each refreshes it
  every few seconds: arq's health-check key, ``metrics-ingest:health``,
  ``commands-consumer:health``);
* the web client (``sm-client --web``): ``GET /`` on its ``--port`` (plain
  HTTP) answers 200 (the app's page).

Usage: ``healthcheck.py`` (discover), ``healthcheck.py --pid PID`` (that
process), ``healthcheck.py --url URL`` (just this URL). Exit 0 healthy, 1 not.
It uses the standard library only, except ``redis`` for the worker.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The port each service listens on by default (sm_ctl.services.default_port;
# a test keeps the two equal). The worker has no HTTP listener.
DEFAULT_PORTS: dict[str, int] = {
    "registry": 8101,
    "metrics": 8102,
    "commands": 8103,
    "gateway": 8104,
    "api": 8700,
}
WORKER = "worker"
# arq's health-check key of the default queue (arq.constants).
WORKER_HEALTH_KEY = "arq:queue:health-check"
METRICS_INGEST = "metrics-ingest"
# sm_shared.streams.METRICS_INGEST_HEALTH_KEY (a test keeps the two equal).
INGEST_HEALTH_KEY = "metrics-ingest:health"
COMMANDS_CONSUMER = "commands-consumer"
# sm_shared.streams.COMMANDS_CONSUMER_HEALTH_KEY (a test keeps the two equal).
CONSUMER_HEALTH_KEY = "commands-consumer:health"
# The processes checked by a key in Redis, not over HTTP.
HEALTH_KEYS: dict[str, str] = {
    WORKER: WORKER_HEALTH_KEY,
    METRICS_INGEST: INGEST_HEALTH_KEY,
    COMMANDS_CONSUMER: CONSUMER_HEALTH_KEY,
}
# The web client (sm-client --web): its defaults (sm_client.main; a test keeps them equal).
WEB = "web"
WEB_CLIENT_PROGRAM = "sm-client"
WEB_DEFAULT_HOST = "127.0.0.1"
WEB_DEFAULT_PORT = 8550
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TIMEOUT = 3.0
FALSE_WORDS = frozenset({"0", "false", "no", "off", "f", "n"})


class NoTarget(RuntimeError):
    """No ``smctl serve`` (or ``sm-client --web``) process to check."""


@dataclass(frozen=True)
class Target:
    """What one ``smctl serve`` process (or the web client) serves, and the path to ask."""

    service: str
    host: str
    port: int
    tls: bool
    path: str = "/readyz"

    @property
    def url(self) -> str:
        # A wildcard listen address is reached on loopback.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{self.path}"


def _option(argv: Sequence[str], name: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def serve_arguments(argv: Sequence[str]) -> list[str] | None:
    """The arguments after ``smctl serve`` in ``argv``, or None when it is not such a process."""
    for index, arg in enumerate(argv):
        if Path(arg).name == "smctl" and index + 1 < len(argv) and argv[index + 1] == "serve":
            return list(argv[index + 2 :])
    return None


def web_arguments(argv: Sequence[str]) -> list[str] | None:
    """The arguments of an ``sm-client --web`` command line, or None when it is not one."""
    for index, arg in enumerate(argv):
        if Path(arg).name == WEB_CLIENT_PROGRAM:
            args = list(argv[index + 1 :])
            return args if "--web" in args else None
    return None


def target_from(argv: Sequence[str], env: Mapping[str, str]) -> Target | None:
    """The target of a ``smctl serve`` or ``sm-client --web`` command line; None otherwise."""
    web = web_arguments(argv)
    if web is not None:
        port_text = _option(web, "--port")
        return Target(
            service=WEB,
            host=_option(web, "--host") or WEB_DEFAULT_HOST,
            port=int(port_text) if port_text else WEB_DEFAULT_PORT,
            tls=False,
            path="/",
        )
    args = serve_arguments(argv)
    if not args:
        return None
    service = args[0]
    host = _option(args, "--host") or env.get("SM_HOST") or "0.0.0.0"
    port_text = _option(args, "--port") or env.get("SM_PORT")
    port = int(port_text) if port_text else DEFAULT_PORTS.get(service, 0)
    if "--no-tls" in args:
        tls = False
    elif "--tls" in args:
        tls = True
    else:
        tls = env.get("SM_TLS", "true").strip().lower() not in FALSE_WORDS
    return Target(service=service, host=host, port=port, tls=tls)


def _cmdline(pid: int, proc: Path) -> list[str]:
    raw = (proc / str(pid) / "cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def discover(proc: Path = Path("/proc"), pid: int | None = None) -> Target:
    """The ``smctl serve`` (or web client) process of this container (the lowest pid), or ``pid``'s."""
    pids = (
        [pid]
        if pid is not None
        else sorted(int(entry.name) for entry in proc.iterdir() if entry.name.isdigit())
    )
    for candidate in pids:
        try:
            target = target_from(_cmdline(candidate, proc), os.environ)
        except OSError:  # the process ended while we looked
            continue
        if target is not None:
            return target
    raise NoTarget("no `smctl serve` or `sm-client --web` process found")


def check_http(url: str, timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Whether ``GET url`` answers 200, and what it said."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310 (our own URL)
            body = response.read(500).decode(errors="replace")
            return response.status == 200, f"{response.status} {body}"
    except urllib.error.HTTPError as exc:
        return False, f"{exc.code} {exc.read(500).decode(errors='replace')}"
    except (OSError, ssl.SSLError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def check_worker(redis_url: str, timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Whether the worker's health-check key is present in Redis."""
    return check_key(redis_url, WORKER_HEALTH_KEY, timeout)


def check_key(redis_url: str, key: str, timeout: float = TIMEOUT) -> tuple[bool, str]:
    """Whether ``key`` (a process's health key) is present in Redis."""
    import redis  # only the worker's check needs it; the services image has it

    try:
        client = redis.Redis.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        try:
            found = bool(client.exists(key))
        finally:
            client.close()
    except redis.RedisError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return found, f"{key} {'present' if found else 'missing'}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Health check of a Server Manager container.")
    parser.add_argument("--pid", type=int, help="check this smctl serve process")
    parser.add_argument("--url", help="check this readiness URL instead")
    args = parser.parse_args(argv)
    if args.url:
        healthy, detail = check_http(args.url)
        what = args.url
    else:
        try:
            target = discover(pid=args.pid)
        except NoTarget as exc:
            print(f"unhealthy: {exc}", file=sys.stderr)
            return 1
        key = HEALTH_KEYS.get(target.service)
        if key is not None:
            healthy, detail = check_key(os.environ.get("SM_REDIS_URL", DEFAULT_REDIS_URL), key)
        else:
            healthy, detail = check_http(target.url)
        what = f"{target.service} ({target.url if key is None else 'Redis'})"
    print(f"{'healthy' if healthy else 'unhealthy'}: {what}: {detail}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())

"""The deployment files stay true to the code.

No Docker engine or cluster runs here, so each file is checked by the tool
that owns its format (the Compose schema, Kubernetes' OpenAPI schemas,
``nginx -t``, ``systemd-analyze verify``) and against the code it names: every
route against :data:`sm_shared.routes.ROUTES`, every port against
``DEFAULT_PORTS``, every ``SM_`` variable against the Settings classes and
``smctl``'s options, every ``smctl`` command line against the real command
(parsed by its own click parser), every ``sm-client`` command line against the
client's parser. The edge proxy also runs for real, in front of a real
``smctl serve registry`` and a real ``sm-client --web``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import kubernetes_validate
import pytest
import redis
import typer.main
import websockets.asyncio.client
import websockets.asyncio.server
import websockets.exceptions
import yaml
from pydantic_settings import BaseSettings

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.routes import (
    DEFAULT_PORTS,
    ROUTES,
    SERVICES,
    WEB_CLIENT,
    WEB_PORT,
    WEB_PREFIX,
    service_for,
)
from sm_shared.settings import CoreSettings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = ROOT / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
UNIT_FILE = DEPLOY / "systemd" / "server-manager.service"
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")
K8S_VERSION = "1.30"
# The services image's name in docker-compose.yml and k8s/.
SERVICES_IMAGE = "server-manager"
# Services that open a SQLite database (the worker writes metrics' and commands').
SQLITE_WORKLOADS = (
    "registry",
    "metrics",
    "commands",
    "worker",
    "metrics-ingest",
    "commands-consumer",
)
# Processes without a listener (`smctl serve worker|metrics-ingest|commands-consumer`):
# checked by a key in Redis.
BACKGROUND = ("worker", "metrics-ingest", "commands-consumer")
# The OpenAPI documents (openapi/) each service's wheel carries (hatch force-include).
SERVICE_DOCUMENTS: dict[str, tuple[str, ...]] = {
    "registry": ("registry.yaml",),
    "metrics": ("metrics.yaml",),
    "commands": ("commands.yaml",),
    "gateway": ("gateway.yaml", "agent-protocol.json", "events-protocol.json"),
}
# DEFAULT_PORTS by plain service name.
PORTS: dict[str, int] = {service: port for service, port in DEFAULT_PORTS.items()}


def load_script(name: str) -> ModuleType:
    """A script of deploy/ as a module (deploy/ is not a package)."""
    path = DEPLOY / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


nginx_config = load_script("nginx_config")
healthcheck = load_script("healthcheck")


def require_program(name: str, package: str) -> str:
    """The path of ``name``; skipped when missing on a developer's machine, a failure in CI."""
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if path is None:
        message = f"{name} is not installed (Debian package {package}; ./sm test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


# ---------------------------------------------------------------- the code's side


def smctl_group() -> Any:
    """smctl's click command tree (typer builds it from ``sm_ctl.main.app``)."""
    from sm_ctl.main import app

    return typer.main.get_command(app)


def check_smctl_args(args: list[str]) -> None:
    """Parse ``smctl ARGS`` with smctl's own parser: unknown commands, options or choices fail."""
    command = smctl_group()
    rest = list(args)
    path = ["smctl"]
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        sub = command.get_command(None, rest[0])
        assert sub is not None, f"`{' '.join([*path, rest[0]])}` is not an smctl command"
        path.append(rest.pop(0))
        command = sub
    try:
        command.make_context(" ".join(path), rest)
    except Exception as exc:  # click's UsageError and its kin
        if type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0:
            return  # --help: shown, and a success
        raise AssertionError(f"`{shlex.join(['smctl', *args])}` is refused: {exc}") from exc
    assert not hasattr(command, "get_command"), f"`{' '.join(path)}` needs a subcommand"


def smctl_commands_in(text: str) -> list[list[str]]:
    """Every ``smctl ...`` command line in a shell text (up to ``&&``, ``;``, ``|`` or a newline)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        for match in re.finditer(r"(?:^|[\s/`(])smctl\s+([^&;|`\n]*)", line):
            words = shlex.split(match.group(1).replace("$$", "$"), comments=True)
            commands.append(words)
    return commands


def settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic-settings class of our packages (each package's ``settings`` modules)."""
    for package_name in ("sm_shared", "sm_registry", "sm_metrics", "sm_commands", "sm_gateway"):
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if info.name.rsplit(".", 1)[-1] == "settings":
                importlib.import_module(info.name)
    found: list[type[BaseSettings]] = []
    pending: list[type[BaseSettings]] = [BaseSettings]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            pending.append(sub)
            if sub.__module__.startswith("sm_"):
                found.append(sub)
    return found


def settings_variables() -> set[str]:
    """The environment variables the Settings classes read."""
    names: set[str] = set()
    for cls in settings_classes():
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field_name, field in cls.model_fields.items():
            names.add(f"{prefix}{field_name}".upper())
            if isinstance(field.alias, str):
                names.add(field.alias.upper())
    return names


def smctl_variables() -> set[str]:
    """The environment variables smctl's options read (``envvar=``)."""
    names: set[str] = set()
    pending = [smctl_group()]
    while pending:
        command = pending.pop()
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
        if hasattr(command, "commands"):
            pending.extend(command.commands.values())
    return names


def agent_variables() -> set[str]:
    from sm_agent import settings as agent_settings

    return {agent_settings.ENV_PREFIX + key.upper() for key in (*agent_settings.KEYS, "config")}


def client_variables() -> set[str]:
    """The environment variables the client reads (``sm-client``'s options, its live events)."""
    sources = (ROOT / "client" / "src" / "sm_client").rglob("*.py")
    pattern = re.compile(r"""environ(?:\.get\(|\[)\s*["'](SM_\w+)["']""")
    return {name for path in sources for name in pattern.findall(path.read_text())}


def known_variables() -> set[str]:
    return settings_variables() | smctl_variables() | agent_variables() | client_variables()


def check_client_args(args: list[str]) -> argparse.Namespace:
    """Parse ``sm-client ARGS`` with the client's own parser (unknown options fail)."""
    from sm_client.main import parser

    try:
        return parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"`{shlex.join(['sm-client', *args])}` is refused") from exc


def sm_variables_in(text: str) -> set[str]:
    return set(re.findall(r"\bSM_[A-Z0-9_]*[A-Z0-9]\b", text))


def body_limit() -> int:
    limit = CoreSettings.model_fields["max_body_bytes"].default
    assert isinstance(limit, int)
    return limit


def test_the_route_table_is_what_these_files_route() -> None:
    # The files below assume every routed service has a default port and a name
    # that is its host name; a new service in the table shows up here first.
    assert {service for _, service in ROUTES} <= set(SERVICES) == set(DEFAULT_PORTS)


def test_the_web_client_is_the_edges_fallback_not_a_route() -> None:
    # `smctl up` serves the web client on a port of its own: its router must keep
    # answering 404 for paths no service claims, so "/" is not in the table.
    assert WEB_PREFIX not in {prefix for prefix, _ in ROUTES}
    assert WEB_CLIENT not in SERVICES
    assert WEB_PORT not in DEFAULT_PORTS.values()
    for path in ("/", "/ws", "/nodes/n-1", "/flutter_bootstrap.js"):
        assert service_for(path) is None, path
    # … and every routed prefix is longer than the fallback (longest prefix wins).
    assert all(prefix.startswith(WEB_PREFIX) and prefix != WEB_PREFIX for prefix, _ in ROUTES)


# ---------------------------------------------------------------- nginx


def nginx_locations(text: str) -> dict[str, dict[str, Any]]:
    """The prefix locations of an nginx config: prefix → upstream and directives."""
    locations: dict[str, dict[str, Any]] = {}
    for match in re.finditer(r"^\s*location (\S+) \{\n(.*?)^\s*\}", text, re.M | re.S):
        prefix, body = match.group(1), match.group(2)
        directives: dict[str, list[str]] = {}
        for line in body.splitlines():
            words = line.strip().rstrip(";").split(None, 1)
            if words:
                directives.setdefault(words[0], []).append(words[1] if len(words) > 1 else "")
        locations[prefix] = directives
    return locations


def test_nginx_conf_is_the_generated_one() -> None:
    committed = (DEPLOY / "nginx.conf").read_text()
    assert committed == nginx_config.render(nginx_config.COMPOSE), (
        "deploy/nginx.conf is stale: run `uv run python deploy/nginx_config.py`"
    )
    assert nginx_config.main(["--check"]) == 0


def test_nginx_routes_are_the_route_table() -> None:
    locations = nginx_locations((DEPLOY / "nginx.conf").read_text())
    routed = {prefix: d for prefix, d in locations.items() if prefix.startswith("/")}
    assert set(routed) == {prefix for prefix, _ in ROUTES} | {"/"}
    for prefix, service in ROUTES:
        directives = routed[prefix]
        assert directives["set"] == [f"$upstream {service}:{DEFAULT_PORTS[service]}"]
        assert directives["proxy_pass"] == ["https://$upstream"]
        headers = dict(h.split(None, 1) for h in directives["proxy_set_header"])
        assert headers["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
        if service == "gateway":  # WebSockets: HTTP/1.1 upgrade and long timeouts
            assert directives["proxy_http_version"] == ["1.1"]
            assert headers["Upgrade"] == "$http_upgrade"
            assert headers["Connection"] == "$connection_upgrade"
            assert directives["proxy_read_timeout"] == ["3600s"]
        else:
            assert "Upgrade" not in headers
    # Anything else is the web client's: its app and its WebSocket (/ws), plain HTTP.
    web = routed[WEB_PREFIX]
    assert web["set"] == [f"$web {WEB_CLIENT}:{WEB_PORT}"]
    assert web["proxy_pass"] == ["http://$web"]
    headers = dict(h.split(None, 1) for h in web["proxy_set_header"])
    assert headers["Upgrade"] == "$http_upgrade"
    assert headers["Connection"] == "$connection_upgrade"
    assert headers["X-Forwarded-Proto"] == "$scheme"
    assert web["proxy_http_version"] == ["1.1"]
    assert directives_of_timeout(web) >= 3600
    assert "return" not in web


def directives_of_timeout(directives: dict[str, Any]) -> int:
    (timeout,) = directives["proxy_read_timeout"]
    return int(timeout.rstrip("s"))


def test_nginx_without_a_web_client_answers_a_problem_for_other_paths() -> None:
    # A profile without the web client (the tests' edge below, or an edge of
    # services only): other paths are nobody's, a problem from the proxy itself.
    profile = nginx_config.EdgeProfile(
        listen="8443", upstreams=nginx_config.COMPOSE.upstreams, resolver=None
    )
    routed = nginx_locations(nginx_config.render(profile))
    assert routed[WEB_PREFIX]["return"][0].startswith("404 ")
    assert "proxy_pass" not in routed[WEB_PREFIX]


def test_nginx_body_limit_is_the_services_limit() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    assert re.findall(r"client_max_body_size (\d+);", text) == [str(body_limit())]


@dataclass
class EdgeFiles:
    conf: Path
    prefix: Path


def lay_out_edge(tmp_path: Path, data: DataDir, text: str) -> EdgeFiles:
    """nginx.conf with tls/ beside it (as the compose file mounts them) and a prefix."""
    conf_dir = tmp_path / "conf"
    (conf_dir / "tls").mkdir(parents=True)
    for source in (data.server_cert, data.server_key, data.ca_cert):
        shutil.copy(source, conf_dir / "tls" / source.name)
    conf = conf_dir / "nginx.conf"
    conf.write_text(text)
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    return EdgeFiles(conf, prefix)


def nginx_test(nginx: str, files: EdgeFiles) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx, "-t", "-q", "-e", "stderr", "-p", f"{files.prefix}/", "-c", str(files.conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_nginx_accepts_the_committed_config(tmp_path: Path, data_dir: DataDir) -> None:
    nginx = require_program("nginx", "nginx")
    files = lay_out_edge(tmp_path, data_dir, (DEPLOY / "nginx.conf").read_text())
    result = nginx_test(nginx, files)
    assert result.returncode == 0, result.stderr
    assert "emerg" not in result.stderr, result.stderr
    assert "warn" not in result.stderr, result.stderr


def test_nginx_check_refuses_a_broken_config(tmp_path: Path, data_dir: DataDir) -> None:
    # The check above can fail: the same file with one misspelled directive does.
    nginx = require_program("nginx", "nginx")
    text = (
        (DEPLOY / "nginx.conf").read_text().replace("proxy_ssl_verify on;", "proxy_ssl_verfy on;")
    )
    result = nginx_test(nginx, lay_out_edge(tmp_path, data_dir, text))
    assert result.returncode != 0
    assert "proxy_ssl_verfy" in result.stderr


# ---- the edge proxy running for real


@contextlib.contextmanager
def running_process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_for(
    condition: Any, what: str, log: Path, proc: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not come up:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ca_context(data: DataDir) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(data.ca_cert))


@contextlib.contextmanager
def service_processes(
    tmp_path: Path, data: DataDir, services: dict[str, dict[str, str]]
) -> Iterator[dict[str, int]]:
    """``smctl serve SERVICE`` for each service (TLS on, as in the containers), on free ports.

    ``services`` maps a service to its extra environment, in which ``{registry}``
    stands for the registry's port. They start together and are yielded once all are ready.
    """
    ports = {service: free_port() for service in services}
    with contextlib.ExitStack() as stack:
        started = []
        for service, extra in services.items():
            log = tmp_path / f"{service}.log"
            args = [str(BIN / "smctl"), "serve", service, "--host", "127.0.0.1"]
            env = {k: v.format(**ports) for k, v in extra.items()}
            full_env = {**os.environ, "SM_DATA_DIR": str(data.root), **env}
            proc = stack.enter_context(
                running_process([*args, "--port", str(ports[service])], log, full_env)
            )
            started.append((service, log, proc))
        for service, log, proc in started:

            def ready(port: int = ports[service]) -> bool:
                try:
                    response = httpx.get(
                        f"https://localhost:{port}/readyz", verify=ca_context(data)
                    )
                except httpx.HTTPError:
                    return False
                return response.status_code == 200

            wait_for(ready, f"smctl serve {service}", log, proc, timeout=45)
        yield ports


@contextlib.contextmanager
def edge_process(
    tmp_path: Path, data: DataDir, upstreams: dict[str, int], web: int | None = None
) -> Iterator[int]:
    """nginx with the generated config, routing to ``upstreams`` (service → port on 127.0.0.1).

    ``web``: the web client's port (every other path goes there); None: a 404 problem.
    """
    nginx = require_program("nginx", "nginx")
    port = free_port()
    # Services not running get a closed port: the proxy must answer 503 for them.
    closed = free_port()
    profile = nginx_config.EdgeProfile(
        listen=f"127.0.0.1:{port}",
        upstreams={s: f"127.0.0.1:{upstreams.get(s, closed)}" for s in SERVICES},
        resolver=None,
        web=None if web is None else f"127.0.0.1:{web}",
    )
    files = lay_out_edge(tmp_path, data, nginx_config.render(profile))
    log = tmp_path / "nginx.log"
    args = [
        nginx,
        "-e",
        "stderr",
        "-p",
        f"{files.prefix}/",
        "-c",
        str(files.conf),
        "-g",
        "daemon off;",
    ]
    with running_process(args, log) as proc:
        wait_for(lambda: port_open(port), "nginx", log, proc)
        yield port


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_edge_routes_to_the_registry_and_answers_problems_itself(
    tmp_path: Path, data_dir: DataDir, redis_url: str
) -> None:
    with (
        service_processes(tmp_path, data_dir, {"registry": {"SM_REDIS_URL": redis_url}}) as ports,
        edge_process(tmp_path, data_dir, ports) as edge,
        # The edge's certificate is verified with the core CA, as agents do.
        httpx.Client(base_url=f"https://localhost:{edge}", verify=ca_context(data_dir)) as client,
    ):
        ca = client.get("/ca.pem")
        assert ca.status_code == 200
        assert ca.content == data_dir.ca_cert.read_bytes()

        nodes = client.get("/api/v1/nodes")  # the registry's own 401 problem
        assert nodes.status_code == 401
        assert nodes.headers["content-type"] == "application/problem+json"

        nowhere = client.get("/no/such/route")
        assert nowhere.status_code == 404
        assert nowhere.headers["content-type"] == "application/problem+json"
        assert nowhere.json()["status"] == 404

        down = client.get("/api/v1/metrics/latest")  # metrics is not running
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"

        big = client.post(
            "/api/v1/enroll",
            content=b"{" + b" " * body_limit() + b"}",
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413
        assert big.headers["content-type"] == "application/problem+json"
        assert big.json()["detail"] == f"request bodies are limited to {body_limit()} bytes"

        # The health check of the services image, against the same process.
        assert healthcheck.check_http(f"https://127.0.0.1:{ports['registry']}/readyz")[0]
    assert not healthcheck.check_http(f"https://127.0.0.1:{ports['registry']}/readyz", timeout=1)[0]


@pytest.mark.slow
@pytest.mark.timeout(150)  # four services start: slow on a loaded machine
async def test_edge_routes_the_table_to_the_real_services_and_carries_an_agent(
    tmp_path: Path, data_dir: DataDir, redis_url: str
) -> None:
    """Every route reaches its service; an agent enrolls (registry) and connects (gateway)."""
    core: dict[str, dict[str, str]] = {s: {"SM_REDIS_URL": redis_url} for s in SERVICES}
    core["gateway"]["SM_REGISTRY_URL"] = "https://127.0.0.1:{registry}"
    with (
        service_processes(tmp_path, data_dir, core) as ports,
        edge_process(tmp_path, data_dir, ports) as edge,
    ):
        # Each prefix of the route table answers through the edge exactly what its
        # service answers directly (and not the edge's own "no service" problem).
        async with httpx.AsyncClient(verify=ca_context(data_dir)) as direct:
            for prefix, service in ROUTES:
                path = prefix.rstrip("/") + "/deploy-route-check"
                via_edge = await direct.get(f"https://localhost:{edge}{path}")
                at_service = await direct.get(f"https://localhost:{ports[service]}{path}")
                assert (via_edge.status_code, via_edge.content) == (
                    at_service.status_code,
                    at_service.content,
                ), f"{path} → {service}"
                assert b"no service serves this path" not in via_edge.content, path

        registry_doc = yaml.safe_load((ROOT / "openapi" / "registry.yaml").read_text())
        enroll = registry_doc["paths"]["/api/v1/enroll"]["post"]["requestBody"]["content"]
        body = {
            **enroll["application/json"]["example"],
            "key": data_dir.enrollment_key.read_text().strip(),
        }
        async with httpx.AsyncClient(
            base_url=f"https://localhost:{edge}", verify=ca_context(data_dir)
        ) as client:
            enrolled = await client.post("/api/v1/enroll", json=body)
        assert enrolled.status_code == 201, enrolled.text
        credential = enrolled.json()["credential"]

        url = f"wss://localhost:{edge}/agent/ws"
        # The gateway's own handshake refusal comes back through the proxy.
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.asyncio.client.connect(url, ssl=ca_context(data_dir)):
                pass
        assert refused.value.response.status_code == 401

        protocol = json.loads((ROOT / "openapi" / "agent-protocol.json").read_text())
        hello = protocol["definitions"]["hello"]["examples"][0]
        async with websockets.asyncio.client.connect(
            url,
            ssl=ca_context(data_dir),
            additional_headers={"Authorization": f"Bearer {credential}"},
        ) as link:
            await link.send(json.dumps(hello))
            welcome = json.loads(await asyncio.wait_for(link.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        # The services image's health check reads the gateway's readiness too.
        assert healthcheck.check_http(f"https://127.0.0.1:{ports['gateway']}/readyz")[0]


async def test_edge_passes_websocket_upgrades_to_the_gateway(
    tmp_path: Path, data_dir: DataDir
) -> None:
    # The real gateway is checked above on /agent/ws; it has no /events/ws yet
    # (issue 3), so a WebSocket server with the core's certificate stands where
    # the gateway listens: both WebSocket routes upgrade through the edge, over
    # TLS to the upstream verified with the core CA.
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(data_dir.server_cert, data_dir.server_key)
    paths: list[str] = []

    async def echo(connection: websockets.asyncio.server.ServerConnection) -> None:
        assert connection.request is not None
        paths.append(connection.request.path)
        async for message in connection:
            assert isinstance(message, str)
            await connection.send(f"{connection.request.path} {message}")

    async with websockets.asyncio.server.serve(echo, "127.0.0.1", 0, ssl=server_tls) as server:
        gateway_port = next(iter(server.sockets)).getsockname()[1]
        with edge_process(tmp_path, data_dir, {"gateway": gateway_port}) as edge:
            for path in ("/agent/ws", "/events/ws"):
                async with websockets.asyncio.client.connect(
                    f"wss://localhost:{edge}{path}", ssl=ca_context(data_dir)
                ) as ws:
                    await ws.send("hello")
                    assert await asyncio.wait_for(ws.recv(), 5) == f"{path} hello"
    assert paths == ["/agent/ws", "/events/ws"]


@pytest.mark.slow
@pytest.mark.timeout(240)  # Flet imports slowly on a loaded machine
async def test_edge_serves_the_real_web_client_beside_the_services(
    tmp_path: Path, data_dir: DataDir
) -> None:
    """`sm-client --web` behind the edge: its page and its WebSocket at /, the table's paths kept.

    No service runs (the routes to them are checked above): their paths get the
    edge's 503 problem, never the web client's page.
    """
    port = free_port()
    log = tmp_path / "web.log"
    args = [str(BIN / "sm-client"), "--web", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "BROWSER": "/bin/true"}
    with running_process([*args, "--server", "https://localhost"], log, env) as web:
        target = healthcheck.target_from(["/opt/server-manager/bin/python", *args], {})
        assert target is not None
        assert target.url == f"http://127.0.0.1:{port}/"
        # The image's health check of the web container: GET / answers 200.
        wait_for(lambda: healthcheck.check_http(target.url, timeout=2)[0], "web", log, web, 120)
        with edge_process(tmp_path, data_dir, {}, web=port) as edge:
            async with httpx.AsyncClient(
                base_url=f"https://localhost:{edge}", verify=ca_context(data_dir), timeout=30
            ) as client:
                page = await client.get("/")
                assert page.status_code == 200
                assert page.headers["content-type"].startswith("text/html")
                assert "flutter" in page.text.lower()
                # A deep link of the app is the app too (its router takes it from there).
                deep = await client.get("/nodes")
                assert deep.status_code == 200
                assert deep.headers["content-type"].startswith("text/html")
                # The route table's paths stay the services' (down here: the edge's 503).
                for path in ("/ca.pem", "/api/v1/nodes", "/events/ws", "/.well-known/x"):
                    down = await client.get(path)
                    assert down.status_code == 503, path
                    assert down.headers["content-type"] == "application/problem+json", path
            # The app's WebSocket upgrades through the edge (the session protocol
            # is Flet's own: opening it is what the proxy has to allow).
            async with websockets.asyncio.client.connect(
                f"wss://localhost:{edge}/ws", ssl=ca_context(data_dir), open_timeout=30
            ) as ws:
                assert ws.response is not None
                assert ws.response.status_code == 101


# ---------------------------------------------------------------- the health check script


def test_healthcheck_ports_are_smctl_defaults() -> None:
    from sm_ctl.catalog import Service, default_port

    for service in Service:
        if service.value in healthcheck.HEALTH_KEYS:
            assert default_port(service) == 0  # no listener: checked by its key in Redis
        else:
            assert healthcheck.DEFAULT_PORTS[service.value] == default_port(service)
    assert set(healthcheck.DEFAULT_PORTS) | set(healthcheck.HEALTH_KEYS) == {
        s.value for s in Service
    }


def test_healthcheck_reads_the_serve_command_line() -> None:
    smctl = "/opt/server-manager/bin/smctl"
    target = healthcheck.target_from(
        ["/opt/server-manager/bin/python", smctl, "serve", "metrics", "--port", "9000"], {}
    )
    assert target == healthcheck.Target("metrics", "0.0.0.0", 9000, True)
    assert target.url == "https://127.0.0.1:9000/readyz"
    assert healthcheck.target_from([smctl, "serve", "gateway", "--no-tls"], {}).url == (
        "http://127.0.0.1:8104/readyz"
    )
    from_env = healthcheck.target_from(
        [smctl, "serve", "registry"], {"SM_PORT": "7000", "SM_TLS": "false", "SM_HOST": "::1"}
    )
    assert from_env.url == "http://[::1]:7000/readyz"
    assert healthcheck.target_from([smctl, "up"], {}) is None
    assert healthcheck.target_from(["nginx", "-g", "daemon off;"], {}) is None


def test_healthcheck_reads_the_web_clients_command_line() -> None:
    from sm_client.main import DEFAULT_HOST, DEFAULT_PORT

    assert (healthcheck.WEB_DEFAULT_HOST, healthcheck.WEB_DEFAULT_PORT) == (
        DEFAULT_HOST,
        DEFAULT_PORT,
    )
    program = "/opt/server-manager/bin/sm-client"
    python = "/opt/server-manager/bin/python"
    target = healthcheck.target_from([python, program, "--web", "--port", "8105"], {})
    assert target == healthcheck.Target("web", DEFAULT_HOST, 8105, False, "/")
    assert target.url == "http://127.0.0.1:8105/"
    wide = healthcheck.target_from([program, "--web", "--host", "0.0.0.0"], {})
    assert wide is not None
    assert wide.url == f"http://127.0.0.1:{DEFAULT_PORT}/"
    assert healthcheck.target_from([python, program], {}) is None  # a desktop window


def test_healthcheck_finds_the_serve_process(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid, argv in (
        (1, ["/sbin/docker-init", "--"]),
        (7, ["python", "/x/smctl", "serve", "commands"]),
    ):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (proc / "self").mkdir()
    assert healthcheck.discover(proc).service == "commands"
    with pytest.raises(healthcheck.NoTarget):
        healthcheck.discover(proc, pid=1)


def test_healthcheck_of_the_worker_reads_arq_health_key(redis_url: str) -> None:
    from arq.constants import default_queue_name, health_check_key_suffix

    from sm_ctl.worker import HEALTH_CHECK_KEY

    assert default_queue_name + health_check_key_suffix == healthcheck.WORKER_HEALTH_KEY
    assert healthcheck.WORKER_HEALTH_KEY == HEALTH_CHECK_KEY  # the key smctl's worker refreshes
    assert healthcheck.check_worker(redis_url) == (False, "arq:queue:health-check missing")
    client = redis.Redis.from_url(redis_url)
    client.set(healthcheck.WORKER_HEALTH_KEY, "j_complete=0")
    client.close()
    assert healthcheck.check_worker(redis_url)[0]
    assert not healthcheck.check_worker(f"redis://127.0.0.1:{free_port()}/0", timeout=1)[0]


def test_healthcheck_of_the_metrics_ingest_reads_its_health_key(redis_url: str) -> None:
    from sm_shared.streams import METRICS_INGEST_HEALTH_KEY

    assert healthcheck.INGEST_HEALTH_KEY == METRICS_INGEST_HEALTH_KEY  # the key the ingest sets
    assert healthcheck.HEALTH_KEYS["metrics-ingest"] == METRICS_INGEST_HEALTH_KEY
    key = METRICS_INGEST_HEALTH_KEY
    assert healthcheck.check_key(redis_url, key) == (False, f"{key} missing")
    client = redis.Redis.from_url(redis_url)
    client.set(key, "{}")
    client.close()
    assert healthcheck.check_key(redis_url, key) == (True, f"{key} present")


def test_healthcheck_of_the_commands_consumer_reads_its_health_key() -> None:
    from sm_shared.streams import COMMANDS_CONSUMER_HEALTH_KEY

    assert healthcheck.CONSUMER_HEALTH_KEY == COMMANDS_CONSUMER_HEALTH_KEY  # the key it sets
    assert healthcheck.HEALTH_KEYS["commands-consumer"] == COMMANDS_CONSUMER_HEALTH_KEY


# ---------------------------------------------------------------- docker-compose.yml


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def run_check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_matches_the_compose_schema(tmp_path: Path) -> None:
    result = run_check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and the schema check can fail: a misspelled key is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("    read_only: true\n", "    readonly: true\n", 1)
    )
    assert run_check_jsonschema(broken).returncode != 0


def compose_services_running(service: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, spec)
        for name, spec in compose()["services"].items()
        if spec.get("command", [None, None])[:2] == ["serve", service]
    ]


def test_compose_runs_each_service_in_its_own_container() -> None:
    services = compose()["services"]
    for service in (*SERVICES, *BACKGROUND):
        running = compose_services_running(service)
        assert len(running) == 1, f"{service}: {running}"
        name, spec = running[0]
        assert name == service  # the route table's service is the host name the edge uses
        assert spec["image"].split(":")[0] == SERVICES_IMAGE
        assert spec["build"]["target"] == "services"
        assert spec["read_only"] is True
        assert "ports" not in spec, "only the edge is published"
        assert spec["environment"]["SM_DATA_DIR"] == "/var/lib/server-manager"
        assert "data:/var/lib/server-manager" in spec["volumes"]
        assert spec["environment"]["SM_REDIS_URL"].startswith("redis://redis:6379/")
        assert spec["depends_on"]["init"]["condition"] == "service_completed_successfully"
        command = spec["command"]
        if service not in BACKGROUND:
            assert command[command.index("--port") + 1] == str(PORTS[service])
    assert [n for n, s in services.items() if "ports" in s] == ["edge"]


def test_compose_smctl_command_lines_are_real() -> None:
    commands: list[list[str]] = []
    for spec in compose()["services"].values():
        if spec.get("image", "").split(":")[0] != SERVICES_IMAGE:
            continue
        if spec.get("entrypoint") in (None, ["smctl"]):
            commands.append(spec["command"])
        elif spec["entrypoint"] == ["sm-client"]:
            check_client_args(spec["command"])
        else:  # a shell step
            assert spec["entrypoint"][:2] == ["/bin/sh", "-c"]
            commands += smctl_commands_in(" ".join(spec["command"]))
    assert ["init"] in [c[:1] for c in commands]
    for args in commands:
        check_smctl_args(args)


def test_compose_redis_keeps_its_data_and_never_evicts() -> None:
    redis_spec = compose()["services"]["redis"]
    assert redis_spec["image"] == "redis:7"
    args = redis_spec["command"]
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert args[0] == "redis-server"
    assert options == {
        "--appendonly": "yes",
        "--appendfsync": "everysec",
        "--maxmemory-policy": "noeviction",
    }
    assert redis_spec["volumes"] == ["redis:/data"]
    assert "ports" not in redis_spec


def test_compose_edge_gets_the_generated_config_and_the_core_certificate() -> None:
    services = compose()["services"]
    edge = services["edge"]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in edge["volumes"]}
    conf = edge["command"][edge["command"].index("-c") + 1]
    assert volumes[conf] == "./deploy/nginx.conf"
    # nginx.conf names tls/… relative to its own folder: the volume must be there.
    tls_dir = str(Path(conf).parent / "tls")
    tls_volume = volumes[tls_dir]
    # … filled by the init step with exactly the files the config names.
    init = services["init"]
    init_mounts = {v.split(":")[0]: v.split(":")[1] for v in init["volumes"]}
    script = " ".join(init["command"])
    copied = re.search(r"\bcp ((?:\S+ )+)(\S+)$", script)
    assert copied is not None
    assert copied.group(2).rstrip("/") == init_mounts[tls_volume]
    names = {Path(p).name for p in copied.group(1).split()}
    text = (DEPLOY / "nginx.conf").read_text()
    assert names == set(re.findall(r"\btls/(\S+?);", text))
    data = DataDir(Path(init["environment"]["SM_DATA_DIR"]))
    assert {Path(p) for p in copied.group(1).split()} == {
        data.server_cert,
        data.server_key,
        data.ca_cert,
    }
    # The proxy listens where the port is published.
    listen = re.search(r"listen (\d+) ssl;", text)
    assert listen is not None
    assert edge["ports"] == ["${EDGE_PORT:-443}:" + listen.group(1)]
    assert set(edge["depends_on"]) == set(SERVICES)


def test_compose_certificate_names_the_hosts_services_are_reached_by() -> None:
    init = compose()["services"]["init"]
    (args,) = [c for c in smctl_commands_in(" ".join(init["command"])) if c[0] == "init"]
    names = {args[i + 1] for i, a in enumerate(args) if a == "--name"}
    assert set(SERVICES) <= names
    assert "$PUBLIC_HOST" in names
    # The web client calls the core back through the edge by its service name.
    server = check_client_args(compose()["services"][WEB_CLIENT]["command"]).server
    assert httpx.URL(server).host in names


def test_compose_web_client_runs_behind_the_edge_and_reaches_only_it() -> None:
    compose_file = compose()
    services = compose_file["services"]
    web = services[WEB_CLIENT]  # the host name nginx.conf sends the fallback to
    assert web["image"].split(":")[0] == SERVICES_IMAGE
    assert web["build"]["target"] == "services"
    assert web["read_only"] is True
    assert web["cap_drop"] == ["ALL"]
    assert "ports" not in web, "only the edge is published"
    assert "volumes" not in web, "no key material, no data"
    assert web["entrypoint"] == ["sm-client"]
    args = check_client_args(web["command"])
    assert args.web
    assert (args.host, args.port) == ("0.0.0.0", WEB_PORT)
    # The core as this container reaches it: the edge, on the port it listens on.
    text = (DEPLOY / "nginx.conf").read_text()
    listen = re.search(r"listen (\d+) ssl;", text)
    assert listen is not None
    assert args.server == f"https://edge:{listen.group(1)}"
    # Its network is shared with the edge alone (and reaches nothing else).
    networks = compose_file["networks"]
    (network,) = web["networks"]
    assert networks[network]["internal"] is True
    on_it = [name for name, spec in services.items() if network in spec.get("networks", [])]
    assert sorted(on_it) == sorted(["edge", WEB_CLIENT])
    # The image's health check finds `sm-client --web` and GETs / on its port.
    assert web["healthcheck"]["test"] == ["CMD", "python", "/opt/server-manager/healthcheck.py"]
    target = healthcheck.target_from([*web["entrypoint"], *web["command"]], {})
    assert target is not None
    assert target.url == f"http://127.0.0.1:{WEB_PORT}/"
    # The edge does not wait for it: the services are reachable while it starts.
    assert WEB_CLIENT not in services["edge"]["depends_on"]


# ---------------------------------------------------------------- SM_ variables and ports


def deployment_texts() -> dict[str, str]:
    paths = [
        COMPOSE_FILE,
        DOCKERFILE,
        UNIT_FILE,
        DEPLOY / "nginx.conf",
        *sorted(K8S.glob("*.yaml")),
        K8S / "README.md",
    ]
    return {str(p.relative_to(ROOT)): p.read_text() for p in paths}


def test_every_sm_variable_named_is_read_by_the_code() -> None:
    known = known_variables()
    # The reference points: variables the code certainly reads.
    assert {"SM_DATA_DIR", "SM_REDIS_URL", "SM_REGISTRY_DATABASE_URL", "SM_GATEWAY_URL"} <= known
    unknown = {
        name: sorted(sm_variables_in(text) - known)
        for name, text in deployment_texts().items()
        if sm_variables_in(text) - known
    }
    assert not unknown, f"variables no Settings class or smctl option reads: {unknown}"


def env_values(resources: list[dict[str, Any]]) -> dict[str, str]:
    """Every environment value the compose file and the rendered base give, by a readable name."""
    values: dict[str, str] = {}
    for name, spec in compose()["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            values[f"compose {name} {key}"] = str(value)
    for resource in resources:
        if resource["kind"] == "ConfigMap":
            for key, value in resource["data"].items():
                values[f"k8s configmap {key}"] = value
    for name, _, container in workload_containers(resources):
        for entry in container.get("env", []):
            if "value" in entry:  # not valueFrom
                values[f"k8s {name} {entry['name']}"] = entry["value"]
    return values


def test_service_urls_name_a_service_at_its_port(rendered_base: list[dict[str, Any]]) -> None:
    urls = {
        where: match
        for where, value in env_values(rendered_base).items()
        if (match := re.match(r"(\w+)://([\w.-]+):(\d+)", value))
    }
    checked = 0
    for where, match in urls.items():
        scheme, host, port = match.groups()
        if host == "redis":
            assert (scheme, port) == ("redis", "6379"), where
        elif host in PORTS:
            assert (scheme, int(port)) == ("https", PORTS[host]), where
            checked += 1
    assert checked >= 2  # the gateway's SM_REGISTRY_URL in compose and in k8s


def test_ports_are_the_default_ports() -> None:
    exposed = re.findall(r"^EXPOSE (.+)$", DOCKERFILE.read_text(), re.M)
    assert [set(map(int, e.split())) for e in exposed] == [set(DEFAULT_PORTS.values()), {WEB_PORT}]


# ---------------------------------------------------------------- Dockerfile and .dockerignore


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]]

    def last(self, keyword: str) -> str | None:
        values = [v for k, v in self.instructions if k == keyword]
        return values[-1] if values else None

    def all(self, keyword: str) -> list[str]:
        return [v for k, v in self.instructions if k == keyword]


def dockerfile_stages() -> tuple[dict[str, str], dict[str, Stage]]:
    """ARGs before the first FROM, and the stages by name."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, value = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", value.strip(), re.I)
            assert match, f"every stage is named: FROM {value}"
            current = Stage(match.group(2), match.group(1), [])
            stages[current.name] = current
        elif current is None:
            assert keyword == "ARG", line
            name, _, default = value.partition("=")
            args[name] = default
        else:
            current.instructions.append((keyword, value.strip()))
    return args, stages


def resolve_base(base: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)


def workspace_members() -> list[str]:
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"][
        "members"
    ]
    assert isinstance(members, list)
    return members


def package_dir(distribution: str) -> Path:
    for member in workspace_members():
        project = tomllib.loads((ROOT / member / "pyproject.toml").read_text())["project"]
        if project["name"] == distribution:
            return ROOT / member
    raise AssertionError(f"{distribution} is not a workspace member")


def copy_sources(stage: Stage) -> list[tuple[str, str]]:
    """(source, destination) of the stage's COPYs from the build context."""
    pairs = []
    for value in stage.all("COPY"):
        if value.startswith("--from"):
            continue
        words = shlex.split(value)
        *sources, destination = words
        pairs += [(source, destination) for source in sources]
    return pairs


def uv_syncs(stage: Stage) -> list[tuple[dict[str, str], list[str]]]:
    """The stage's ``uv sync`` runs: (their inline environment, their arguments)."""
    runs = []
    for value in stage.all("RUN"):
        words = shlex.split(value)
        words = [w for w in words if not w.startswith("--mount=")]
        env = {}
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            name, _, val = words.pop(0).partition("=")
            env[name] = val
        if words[:2] == ["uv", "sync"]:
            runs.append((env, words[2:]))
    return runs


def test_dockerfile_stages_and_bases() -> None:
    args, stages = dockerfile_stages()
    assert {"builder", "services", "agent"} <= set(stages)
    builder_base = resolve_base(stages["builder"].base, args)
    assert builder_base.startswith("python:3.11-")
    for final in ("services", "agent"):
        # The copied virtual environments point at the builder's interpreter.
        assert resolve_base(stages[final].base, args) == builder_base


def test_dockerfile_final_images_run_unprivileged_with_a_health_check() -> None:
    _, stages = dockerfile_stages()
    for final in ("services", "agent"):
        user = stages[final].last("USER")
        assert user is not None
        assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
        assert stages[final].last("HEALTHCHECK") is not None
    check = stages["services"].last("HEALTHCHECK")
    assert check is not None
    command = yaml.safe_load(check.split(" CMD ", 1)[1])
    script = command[-1]
    assert (script, "healthcheck.py") == (script, Path(script).name)
    assert ("deploy/healthcheck.py", script) in copy_sources(stages["services"])


def test_dockerfile_copies_existing_sources_and_every_workspace_manifest() -> None:
    _, stages = dockerfile_stages()
    copied = [source for stage in stages.values() for source, _ in copy_sources(stage)]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the build context"
        assert not dockerignored(source.rstrip("/")), f"COPY {source} is excluded by .dockerignore"
    for member in workspace_members():
        assert f"{member}/pyproject.toml" in copied, f"{member}'s manifest is not copied"
    assert {"pyproject.toml", "uv.lock", "openapi/"} <= set(copied)


def test_dockerfile_installs_from_the_lock_and_runs_real_programs() -> None:
    _, stages = dockerfile_stages()
    installs: dict[str, str] = {}  # environment → distribution
    for stage in stages.values():
        for env, args in uv_syncs(stage):
            assert "--frozen" in args, args
            assert "--no-dev" in args, args
            distribution = args[args.index("--package") + 1]
            package_dir(distribution)
            installs[env["UV_PROJECT_ENVIRONMENT"]] = distribution
            if "--no-install-workspace" not in args:
                assert "--no-editable" in args  # the environment must not need /src
    for final, program in (("services", "smctl"), ("agent", "sm-agent")):
        stage = stages[final]
        entrypoint = yaml.safe_load(stage.last("ENTRYPOINT") or "[]")
        assert entrypoint == [program]
        copied_env = next(v.split()[-1] for v in stage.all("COPY") if v.startswith("--from"))
        assert f"PATH={copied_env}/bin:$PATH" in " ".join(stage.all("ENV"))
        project = tomllib.loads((package_dir(installs[copied_env]) / "pyproject.toml").read_text())
        target = project["project"]["scripts"][program]
        module_name, _, attribute = target.partition(":")
        assert hasattr(importlib.import_module(module_name), attribute), target
    cmd = yaml.safe_load(stages["services"].last("CMD") or "[]")
    check_smctl_args(cmd)


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: ``*`` and ``?`` within a name, ``**`` across folders."""
    out = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out) + r"\Z")


def dockerignored(path: str) -> bool:
    """Whether .dockerignore excludes ``path`` (or a folder holding it); the last match wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in dockerignore_patterns():
        regex = dockerignore_regex(pattern)
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_keeps_sources_out_secrets_and_environments_out() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    needed = [
        p
        for p in tracked
        if re.match(r"(services/\w+/src|agent/src|client/src|cli/src|openapi)/", p)
        or p.endswith("pyproject.toml")
        or p in ("uv.lock", "deploy/healthcheck.py")
    ]
    assert needed
    assert [p for p in needed if dockerignored(p)] == []
    for unwanted in (
        ".venv/bin/python",
        ".git/HEAD",
        "k8s/keys/ca-key.pem",
        "data/server-key.pem",
        "services/registry/tests/test_oauth.py",
        "registry.db",
    ):
        assert dockerignored(unwanted), unwanted


def uv_binary() -> str:
    """The uv running this session: ``uv run`` names itself in ``UV``; else PATH."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is neither in $UV nor on PATH (./sm test installs it)")
    return uv


@pytest.mark.slow
def test_dockerfile_environments_build_from_the_context(tmp_path: Path) -> None:
    """The builder's ``uv sync`` runs, on a copy of the context as .dockerignore leaves it."""
    uv = uv_binary()
    _, stages = dockerfile_stages()
    context = tmp_path / "src"
    for source, _ in copy_sources(stages["builder"]):
        origin = ROOT / source
        files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if not dockerignored(relative):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, context / relative)
    environments: dict[str, Path] = {}
    for stage_name in ("services-build", "agent-build"):
        ((env, args),) = uv_syncs(stages[stage_name])
        target = tmp_path / Path(env["UV_PROJECT_ENVIRONMENT"]).name
        result = subprocess.run(
            [uv, "sync", *args, "--quiet"],
            cwd=context,
            env={
                **os.environ,
                "UV_PROJECT_ENVIRONMENT": str(target),
                "UV_PYTHON_DOWNLOADS": "never",
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        environments[stage_name] = target
    services_env, agent_env = environments["services-build"], environments["agent-build"]
    assert (services_env / "bin" / "smctl").exists()
    # The web client (the `web` container) is in the services image, its app bundled.
    assert (services_env / "bin" / "sm-client").exists()
    assert (agent_env / "bin" / "sm-agent").exists()
    (site,) = services_env.glob("lib/python3.*/site-packages")
    for service, names in SERVICE_DOCUMENTS.items():
        for name in names:
            packaged = site / f"sm_{service}" / "openapi" / name
            assert packaged.read_bytes() == (ROOT / "openapi" / name).read_bytes()
    assert (site / "flet_web" / "web" / "index.html").exists()
    # Non-editable: nothing points back into the build context.
    assert not [p for p in site.glob("*.pth") if str(context) in p.read_text()]
    # The agent image stays lean: the agent and its own dependencies only.
    (agent_site,) = agent_env.glob("lib/python3.*/site-packages")
    installed = {p.name.split("-")[0].lower() for p in agent_site.glob("*.dist-info")}
    assert "sm_agent" in installed
    assert not installed & {"sm_shared", "sm_registry", "connexion", "sqlalchemy", "redis"}


def test_every_openapi_document_travels_in_a_wheel() -> None:
    documents = [name for names in SERVICE_DOCUMENTS.values() for name in names]
    assert sorted(documents) == sorted(p.name for p in (ROOT / "openapi").iterdir())


@pytest.mark.parametrize("service", sorted(SERVICE_DOCUMENTS))
def test_service_wheel_carries_its_openapi_documents(tmp_path: Path, service: str) -> None:
    uv = uv_binary()
    result = subprocess.run(
        [
            uv,
            "build",
            "--package",
            f"sm-{service}",
            "--wheel",
            "--out-dir",
            str(tmp_path),
            "--quiet",
        ],
        cwd=ROOT,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob(f"sm_{service}-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in SERVICE_DOCUMENTS[service]:
            packaged = archive.read(f"sm_{service}/openapi/{name}")
            assert packaged == (ROOT / "openapi" / name).read_bytes()


# ---------------------------------------------------------------- systemd


def unit_sections() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in UNIT_FILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            key, _, value = line.partition("=")
            sections[current].append((key, value))
    return sections


def test_systemd_unit_runs_smctl_up_hardened() -> None:
    service = unit_sections()["Service"]
    settings = dict(service)
    exec_start = shlex.split(settings["ExecStart"])
    assert Path(exec_start[0]).name == "smctl"
    assert exec_start[1] == "up"
    check_smctl_args(exec_start[1:])
    state = settings["StateDirectory"]
    environment = dict(v.split("=", 1) for k, v in service if k == "Environment")
    assert environment["SM_DATA_DIR"] == f"%S/{state}"
    assert settings["DynamicUser"] == "yes" or settings.get("User", "root") != "root"
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
        "UMask": "0077",
    }
    assert {k: settings.get(k) for k in expected} == expected


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = require_program("systemd-analyze", "systemd")
    # The unit names the installed smctl; verify it against this checkout's.
    text = UNIT_FILE.read_text()
    exec_start = shlex.split(dict(unit_sections()["Service"])["ExecStart"])
    unit = tmp_path / UNIT_FILE.name
    unit.write_text(text.replace(exec_start[0], str(BIN / "smctl")))

    def verify(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [analyze, "verify", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )

    result = verify(unit)
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if unit.name in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert not complaints, result.stdout + result.stderr
    # systemd-analyze only warns about a bad value: the check above catches that too.
    broken = tmp_path / "broken" / UNIT_FILE.name
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    result = verify(broken)
    assert any(
        "ProtectSystem" in line or "protect system" in line for line in result.stderr.splitlines()
    )


AGENT_UNIT_FILE = DEPLOY / "systemd" / "sm-agent.service"
AGENT_INSTALLER = DEPLOY / "install-agent.sh"


def test_agent_unit_is_unprivileged_hardened_and_verified(tmp_path: Path) -> None:
    from sm_agent.__main__ import EXIT_REFUSED, _parser

    settings: dict[str, list[str]] = {}
    for raw in AGENT_UNIT_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    one = {k: v[-1] for k, v in settings.items()}
    exec_start = shlex.split(one["ExecStart"])
    assert exec_start[0] == "/opt/sm-agent/bin/sm-agent"
    _parser().parse_args(exec_start[1:])  # a command line the agent accepts
    assert one["User"] == "sm-agent"
    assert one["RestartPreventExitStatus"] == str(EXIT_REFUSED)
    environment = dict(v.split("=", 1) for v in settings["Environment"])
    assert environment["SM_AGENT_STATE_DIR"] == f"%S/{one['StateDirectory']}"
    assert set(sm_variables_in(AGENT_UNIT_FILE.read_text())) <= agent_variables()
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "read-only",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectory": "sm-agent",
        "ConfigurationDirectory": "sm-agent",
        "ReadWritePaths": "/etc/sm-agent",
        "SystemCallFilter": "~@privileged",
        "UMask": "0077",
    }
    assert {k: one.get(k) for k in expected} == expected
    assert "@system-service" in settings["SystemCallFilter"]
    assert set(one["RestrictAddressFamilies"].split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    assert "MemoryMax" in one

    analyze = require_program("systemd-analyze", "systemd")
    unit = tmp_path / AGENT_UNIT_FILE.name
    unit.write_text(AGENT_UNIT_FILE.read_text().replace(exec_start[0], str(BIN / "sm-agent")))
    result = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert not [line for line in output.splitlines() if unit.name in line], output


def run_installer(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(AGENT_INSTALLER), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def test_agent_installer_is_posix_sh_and_refuses_bad_input(tmp_path: Path) -> None:
    assert subprocess.run(["sh", "-n", str(AGENT_INSTALLER)], check=False).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck is not None, (
        "shellcheck is missing (Debian package shellcheck; ./sm test installs it)"
    )
    result = subprocess.run(
        [shellcheck, "--shell=sh", str(AGENT_INSTALLER)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    common = ["--prefix", str(tmp_path / "root"), "--no-systemd"]
    refused = {
        "--server is required": ["--key", "sme1.a.b", *common],
        "must be an https:// URL": ["--server", "http://core", "--key", "sme1.a.b", *common],
        "must be an enrollment key": ["--server", "https://core", "--key", "sms1.a.b", *common],
        "unknown argument '--sever'": ["--sever", "https://core"],
    }
    for message, args in refused.items():
        result = run_installer(*args)
        assert result.returncode != 0, message
        assert message in result.stderr, result.stderr
    # An old Python is named, with what to do.
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\ncase "$*" in *print*) echo 3.9.2 ;; *) exit 1 ;; esac\n')
    old.chmod(0o755)
    result = run_installer(
        "--server", "https://core", "--key", "sme1.a.b", "--python", str(old), *common
    )
    assert result.returncode == 1
    assert "needs Python 3.11 or newer; " in result.stderr
    assert "is 3.9.2" in result.stderr
    assert not (tmp_path / "root").exists()


@pytest.mark.slow
def test_agent_installer_installs_into_a_prefix(tmp_path: Path) -> None:
    root = tmp_path / "root"
    key = "sme1." + "A" * 43 + "." + "B" * 43
    result = run_installer(
        "--server",
        "https://core.example.net:8101",
        "--key",
        key,
        "--package",
        str(ROOT / "agent"),
        "--gateway-url",
        "wss://gw-a.example.net:8104/agent/ws",
        "--gateway-url",
        "wss://gw-b.example.net:8104/agent/ws",
        "--prefix",
        str(root),
        "--no-systemd",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    agent = root / "opt" / "sm-agent" / "bin" / "sm-agent"
    version = subprocess.run([str(agent), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == "sm-agent 0.1.0"
    config = root / "etc" / "sm-agent" / "agent.toml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert config.parent.stat().st_mode & 0o777 == 0o700
    from sm_agent.settings import load_settings

    settings = load_settings({"config": str(config)}, env={})
    assert settings.server == "https://core.example.net:8101"
    assert settings.enrollment_key == key
    assert settings.gateway_urls == (
        "wss://gw-a.example.net:8104/agent/ws",
        "wss://gw-b.example.net:8104/agent/ws",
    )
    unit = (root / "etc" / "systemd" / "system" / "sm-agent.service").read_text()
    assert f"ExecStart={agent} run --config {config}" in unit
    # The installed agent reads the file it was given (and, not enrolled, says how to enroll).
    run = subprocess.run(
        [str(agent), "enroll", "--config", str(config), "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("SM_")},
    )
    assert run.returncode == 1
    assert "enrollment failed" in run.stderr


# ---------------------------------------------------------------- Kubernetes

CLUSTER_SCOPED = {
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "IngressClass",
    "PriorityClass",
    "CustomResourceDefinition",
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def kustomization(base: Path = K8S) -> dict[str, Any]:
    data = yaml.safe_load((base / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def render_kustomization(base: Path) -> list[dict[str, Any]]:
    """What ``kustomize build`` makes of this base, for the features it uses.

    resources, namespace, labels (pairs, includeTemplates) and secretGenerator
    with fixed names; anything else in the file fails here, so the renderer
    never silently ignores a feature the base starts to use.
    """
    spec = kustomization(base)
    supported = {
        "apiVersion",
        "kind",
        "namespace",
        "labels",
        "resources",
        "secretGenerator",
        "generatorOptions",
    }
    assert set(spec) <= supported, f"the test renderer does not know {set(spec) - supported}"
    assert spec.get("generatorOptions") == {"disableNameSuffixHash": True}
    resources: list[dict[str, Any]] = []
    for name in spec["resources"]:
        resources += yaml_documents(base / name)
    for generator in spec.get("secretGenerator", []):
        data = {}
        for entry in generator["files"]:
            key, _, path = entry.rpartition("=")
            data[key or Path(path).name] = base64.b64encode((base / path).read_bytes()).decode()
        resources.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": generator.get("type", "Opaque"),
                "data": data,
            }
        )
    for resource in resources:
        metadata = resource["metadata"]
        if spec.get("namespace") and resource["kind"] not in CLUSTER_SCOPED:
            metadata["namespace"] = spec["namespace"]
        for label_set in spec.get("labels", []):
            assert set(label_set) <= {"pairs", "includeTemplates"}
            metadata.setdefault("labels", {}).update(label_set["pairs"])
            if label_set.get("includeTemplates") and resource["kind"] in POD_TEMPLATE_KINDS:
                template = resource["spec"]["template"].setdefault("metadata", {})
                template.setdefault("labels", {}).update(label_set["pairs"])
                for claim in resource["spec"].get("volumeClaimTemplates", []):
                    claim["metadata"].setdefault("labels", {}).update(label_set["pairs"])
    return resources


@pytest.fixture
def rendered_base(tmp_path: Path) -> list[dict[str, Any]]:
    """The base rendered after the documented first step: key material in k8s/keys."""
    base = tmp_path / "k8s"
    shutil.copytree(K8S, base, ignore=shutil.ignore_patterns("keys"))
    initialize(DataDir(base / "keys"), SERVICES)
    return render_kustomization(base)


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def test_k8s_base_validates_against_kubernetes_schemas(rendered_base: list[dict[str, Any]]) -> None:
    kinds = {r["kind"] for r in rendered_base}
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "StatefulSet",
        "Service",
        "Ingress",
    } <= kinds
    for resource in rendered_base:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_k8s_strict_validation_catches_a_misspelled_field(
    rendered_base: list[dict[str, Any]],
) -> None:
    deployment = copy.deepcopy(by_kind(rendered_base, "Deployment")["registry"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbes"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_k8s_renderer_agrees_with_kubectl_kustomize(
    tmp_path: Path, rendered_base: list[dict[str, Any]]
) -> None:
    # A cross-check of the renderer above where kubectl is installed (it is not
    # a Debian package, so CI machines may not have it).
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the cross-check of the test renderer is skipped")
    result = subprocess.run(
        [kubectl, "kustomize", str(tmp_path / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    expected = [d for d in yaml.safe_load_all(result.stdout) if d]

    def key(resource: dict[str, Any]) -> tuple[str, str]:
        return (resource["kind"], resource["metadata"]["name"])

    for resource in expected:  # kustomize wraps base64 at 70 columns
        if resource["kind"] == "Secret":
            resource["data"] = {
                k: base64.b64encode(base64.b64decode(v)).decode()
                for k, v in resource["data"].items()
            }

    assert sorted(rendered_base, key=key) == sorted(expected, key=key)


def workload_containers(
    resources: list[dict[str, Any]],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for resource in resources:
        if resource["kind"] in POD_TEMPLATE_KINDS:
            pod = resource["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield resource["metadata"]["name"], pod, container


def test_k8s_services_run_smctl_serve_on_their_ports(rendered_base: list[dict[str, Any]]) -> None:
    deployments = by_kind(rendered_base, "Deployment")
    services = by_kind(rendered_base, "Service")
    for name in (*SERVICES, *BACKGROUND):
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["image"].split(":")[0] == SERVICES_IMAGE
        args = container["args"]
        assert args[:2] == ["serve", name]
        check_smctl_args(args)
        if name in BACKGROUND:
            assert "ports" not in container
            assert name not in services
            continue
        port = PORTS[name]
        assert args[args.index("--port") + 1] == str(port)
        assert container["ports"] == [{"name": "https", "containerPort": port}]
        service_port = services[name]["spec"]["ports"]
        assert service_port == [{"name": "https", "port": port, "targetPort": "https"}]
        assert (
            services[name]["spec"]["selector"]
            == deployments[name]["spec"]["selector"]["matchLabels"]
        )
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}


def test_k8s_sqlite_services_are_single_and_recreated_on_one_node(
    rendered_base: list[dict[str, Any]],
) -> None:
    deployments = by_kind(rendered_base, "Deployment")
    claims = by_kind(rendered_base, "PersistentVolumeClaim")
    for name in SQLITE_WORKLOADS:
        spec = deployments[name]["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}
        pod = spec["template"]["spec"]
        (claim,) = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims[claim]["spec"]["accessModes"] == ["ReadWriteOnce"]
        # Together on the node holding the volume (SQLite's WAL needs one kernel).
        (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        labels = spec["template"]["metadata"]["labels"]
        assert term["labelSelector"]["matchLabels"].items() <= labels.items()
        # Each database URL points into the mounted volume.
        (container,) = pod["containers"]
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        db_mount = next(
            m
            for v, m in mounts.items()
            if any(x["name"] == v and "persistentVolumeClaim" in x for x in pod["volumes"])
        )
        urls = {k: v for k, v in env.items() if k.endswith("_DATABASE_URL")}
        assert urls, name
        for url in urls.values():
            assert url.startswith(f"sqlite:///{db_mount}/")


def test_k8s_gateway_scales_without_storage(rendered_base: list[dict[str, Any]]) -> None:
    gateway = by_kind(rendered_base, "Deployment")["gateway"]["spec"]
    assert gateway["replicas"] >= 2
    assert gateway["strategy"]["type"] == "RollingUpdate"
    assert not [v for v in gateway["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]


def test_k8s_containers_are_unprivileged_and_bounded(rendered_base: list[dict[str, Any]]) -> None:
    seen = set()
    for name, pod, container in workload_containers(rendered_base):
        seen.add(name)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["capabilities"] == {"drop": ["ALL"]}, name
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name
        assert "livenessProbe" in container, name
    assert seen == {*SERVICES, *BACKGROUND, "redis", WEB_CLIENT}


def test_k8s_keys_secret_is_the_data_dirs_key_material(rendered_base: list[dict[str, Any]]) -> None:
    secrets = by_kind(rendered_base, "Secret")
    keys = secrets["server-manager-keys"]
    data = DataDir(Path("/keys"))
    # Exactly what `smctl serve` requires (sm_ctl.services.require_key_material).
    assert set(keys["data"]) == {p.name for p in data.key_files}
    config = by_kind(rendered_base, "ConfigMap")["server-manager-config"]["data"]
    for name, pod, container in workload_containers(rendered_base):
        if container["image"].split(":")[0] != SERVICES_IMAGE:
            continue
        if name == WEB_CLIENT:  # a client: no key material (test_k8s_web_client_…)
            assert "secret" not in str(pod["volumes"]), name
            assert "envFrom" not in container, name
            continue
        refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
        assert refs == ["server-manager-config"], name
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        (keys_volume,) = [
            v
            for v in pod["volumes"]
            if v.get("secret", {}).get("secretName") == "server-manager-keys"
        ]
        mount = mounts[keys_volume["name"]]
        assert mount["mountPath"] == config["SM_DATA_DIR"], name
        assert mount["readOnly"] is True, name
    tls = secrets["server-manager-edge-tls"]
    assert tls["type"] == "kubernetes.io/tls"
    assert set(tls["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert config["SM_REDIS_URL"].startswith("redis://redis:6379/")
    assert "redis" in by_kind(rendered_base, "Service")


def test_k8s_redis_keeps_its_data_and_never_evicts(rendered_base: list[dict[str, Any]]) -> None:
    redis_set = by_kind(rendered_base, "StatefulSet")["redis"]["spec"]
    (container,) = redis_set["template"]["spec"]["containers"]
    assert container["image"] == "redis:7"
    args = container["args"]
    options = dict(zip(args[1::2], args[2::2], strict=True))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"
    (claim,) = redis_set["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]


def test_k8s_ingress_routes_by_the_route_table(rendered_base: list[dict[str, Any]]) -> None:
    ingress = by_kind(rendered_base, "Ingress")["server-manager"]
    (rule,) = ingress["spec"]["rules"]
    paths = [
        (
            p["path"],
            p["pathType"],
            p["backend"]["service"]["name"],
            p["backend"]["service"]["port"]["number"],
        )
        for p in rule["http"]["paths"]
    ]
    assert paths == [
        (prefix, "Prefix", service, DEFAULT_PORTS[service]) for prefix, service in ROUTES
    ]
    annotations = ingress["metadata"]["annotations"]
    nginx = "nginx.ingress.kubernetes.io/"
    assert annotations[nginx + "proxy-body-size"] == str(body_limit())
    assert annotations[nginx + "backend-protocol"] == "HTTPS"
    assert int(annotations[nginx + "proxy-read-timeout"]) >= 3600
    namespace = kustomization()["namespace"]
    (tls,) = ingress["spec"]["tls"]
    assert annotations[nginx + "proxy-ssl-secret"] == f"{namespace}/{tls['secretName']}"
    assert tls["secretName"] in by_kind(rendered_base, "Secret")
    assert annotations[nginx + "proxy-ssl-name"] == nginx_config.UPSTREAM_TLS_NAME


def test_k8s_web_client_is_the_ingress_fallback_and_reaches_only_the_controller(
    rendered_base: list[dict[str, Any]],
) -> None:
    deployment = by_kind(rendered_base, "Deployment")[WEB_CLIENT]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].split(":")[0] == SERVICES_IMAGE
    assert container["command"] == ["sm-client"]
    args = check_client_args(container["args"])
    assert args.web
    assert (args.host, args.port) == ("0.0.0.0", WEB_PORT)
    assert container["ports"] == [{"name": "http", "containerPort": WEB_PORT}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/", "port": "http"}, probe
    # --server comes from SM_SERVER (the client's own variable): the public URL,
    # the host agents are told (SM_GATEWAY_URL), through the Ingress.
    (server,) = [e for e in container["env"] if e["name"] == "SM_SERVER"]
    ref = server["valueFrom"]["configMapKeyRef"]
    config = by_kind(rendered_base, "ConfigMap")[ref["name"]]["data"]
    public = httpx.URL(config[ref["key"]])
    assert public.scheme == "https"
    assert public.host == httpx.URL(config["SM_GATEWAY_URL"]).host
    service = by_kind(rendered_base, "Service")[WEB_CLIENT]
    assert service["spec"]["ports"] == [{"name": "http", "port": WEB_PORT, "targetPort": "http"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]

    # A second Ingress (its backend is plain HTTP): "/" and nothing else.
    ingresses = by_kind(rendered_base, "Ingress")
    web = ingresses["server-manager-web"]
    (rule,) = web["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert (path["path"], path["pathType"], backend["name"], backend["port"]["number"]) == (
        WEB_PREFIX,
        "Prefix",
        WEB_CLIENT,
        WEB_PORT,
    )
    nginx = "nginx.ingress.kubernetes.io/"
    annotations = web["metadata"]["annotations"]
    assert annotations[nginx + "backend-protocol"] == "HTTP"
    assert int(annotations[nginx + "proxy-read-timeout"]) >= 3600
    main = ingresses["server-manager"]
    assert web["spec"]["tls"] == main["spec"]["tls"]
    assert web["spec"]["ingressClassName"] == main["spec"]["ingressClassName"]
    assert rule.get("host") == main["spec"]["rules"][0].get("host")

    # Network policies: the core's pods do not admit the web pod; the web pod
    # admits the controller only and reaches the controller and DNS only.
    policies = by_kind(rendered_base, "NetworkPolicy")
    web_labels = deployment["spec"]["template"]["metadata"]["labels"]
    core = policies["server-manager"]["spec"]

    def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
        assert set(selector) <= {"matchLabels", "matchExpressions"}, selector
        if not selector.get("matchLabels", {}).items() <= labels.items():
            return False
        for expression in selector.get("matchExpressions", []):
            value = labels.get(expression["key"])
            if expression["operator"] == "NotIn" and value in expression["values"]:
                return False
            if expression["operator"] == "In" and value not in expression["values"]:
                return False
        return True

    assert not selects(core["podSelector"], web_labels)
    for peer in core["ingress"][0]["from"]:
        if "podSelector" in peer and "namespaceSelector" not in peer:
            assert not selects(peer["podSelector"], web_labels)
    workloads = {**by_kind(rendered_base, "Deployment"), **by_kind(rendered_base, "StatefulSet")}
    for name in (*SERVICES, *BACKGROUND, "redis"):
        labels = workloads[name]["spec"]["template"]["metadata"]["labels"]
        assert selects(core["podSelector"], labels), name
    own = policies["server-manager-web"]["spec"]
    assert selects(own["podSelector"], web_labels)
    assert sorted(own["policyTypes"]) == ["Egress", "Ingress"]
    controller = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    }
    (admitted,) = own["ingress"]
    assert admitted["from"] == [controller]
    assert admitted["ports"] == [{"protocol": "TCP", "port": WEB_PORT}]
    egress = own["egress"]
    assert {"to": [controller]} in egress
    others = [rule for rule in egress if rule != {"to": [controller]}]
    for rule in others:  # DNS only
        assert {p["port"] for p in rule["ports"]} == {53}, rule


def test_k8s_readme_commands_are_real() -> None:
    text = (K8S / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```(?:sh|bash|shell)?\n(.*?)```", text, re.S))
    commands = smctl_commands_in(blocks)
    assert any(c[:1] == ["init"] for c in commands)
    for args in commands:
        check_smctl_args(args)
    # The documented init names the in-cluster service hosts (gateway → registry TLS).
    (init,) = [c for c in commands if c[:1] == ["init"]]
    names = {init[i + 1] for i, a in enumerate(init) if a == "--name"}
    assert set(SERVICES) <= names
    # … and writes where the secretGenerator reads.
    files = [f.rpartition("=")[2] for g in kustomization()["secretGenerator"] for f in g["files"]]
    folders = {str(Path(f).parent) for f in files}
    (folder,) = folders
    assert init[init.index("--data-dir") + 1].rstrip("/").endswith(folder)

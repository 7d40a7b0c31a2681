"""``smctl``: the Server Manager command line.

Commands: ``init`` (key material), ``up`` (everything on one machine),
``serve SERVICE`` (one service alone, for containers), ``keys show|rotate``,
``backup`` and ``restore``. Options also come from ``SM_`` environment
variables (shown in ``--help``).
"""

from __future__ import annotations

import asyncio
import functools
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from sm_ctl import banner, lock
from sm_ctl.catalog import (
    Listener,
    MissingKeyMaterial,
    Service,
    default_port,
    require_key_material,
)
from sm_ctl.keyring import Keys, Rotatable, current_keys, rotate
from sm_shared.datadir import DataDir, default_data_dir
from sm_shared.first_start import initialize

if TYPE_CHECKING:
    from sm_ctl.launcher import Started

# Every child of `up` runs this module (`python -m sm_ctl serve ...`): what only
# one command needs (the launcher's HTTP and Redis clients, the archive code)
# is imported inside that command, so the children start sooner.


# The commands against a running core (sm_ctl.remote): the fleet, remote commands,
# the audit log. Their modules (rich tables and progress, the API session) are
# imported only when one of them is looked up, never by `smctl serve`.
REMOTE_COMMANDS = ("nodes", "node", "run", "audit")


@functools.cache
def _remote_commands() -> dict[str, Any]:
    from sm_ctl import audit_cli, fleet_cli, run_cli

    remote = typer.Typer()
    remote.command("nodes")(fleet_cli.nodes)
    remote.add_typer(fleet_cli.node_app, name="node")
    remote.command("run")(run_cli.run)
    remote.add_typer(audit_cli.audit_app, name="audit")
    group = typer.main.get_command(remote)
    assert isinstance(group, TyperGroup)
    return dict(group.commands)


class _Commands(TyperGroup):
    """smctl's commands, the remote ones (REMOTE_COMMANDS) loaded when looked up."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *REMOTE_COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in REMOTE_COMMANDS:
            return _remote_commands()[cmd_name]
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=_Commands,
    name="smctl",
    help="Server Manager: start the core, show and rotate its keys, back it up.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(
    help="Show or rotate the enrollment key, the secret key, the token signing key."
)
app.add_typer(keys_app, name="keys")

# soft_wrap: a key must stay on one line however narrow the terminal (people copy it).
# emoji off: rich would turn the ':CD:' of a fingerprint into an emoji.
out = Console(soft_wrap=True, highlight=False, emoji=False)
err = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SM_DATA_DIR",
        help="The data directory [default: $XDG_DATA_HOME/server-manager]",
        show_default=False,
    ),
]


def _data(data_dir: Path | None) -> DataDir:
    return DataDir((data_dir or default_data_dir()).expanduser().absolute())


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _print_keys(keys: Keys) -> None:
    _say(banner.line(banner.ENROLLMENT, str(keys.enrollment)))
    _say(banner.line(banner.SECRET, str(keys.secret)))
    _say(banner.line(banner.FINGERPRINT, keys.fingerprint_hex))


def _say(text: str = "", style: str | None = None) -> None:
    out.print(text, markup=False, style=style)


@app.command()
def init(
    data_dir: DataDirOption = None,
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name", help="Another name or address for the server certificate (repeatable)"
        ),
    ] = None,
) -> None:
    """Create the data directory's key material (what `up` does on its first start)."""
    data = _data(data_dir)
    created = initialize(data, name or ())
    _say(f"{'Initialised' if created else 'Already initialised:'} {data.root}")
    _print_keys(current_keys(data))


@app.command()
def up(
    data_dir: DataDirOption = None,
    host: Annotated[
        str, typer.Option(help="Address the API and the gateway listen on")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65533,
            help="Port of the HTTP API; the gateway takes the next one, the web client the one after",
        ),
    ] = 8700,
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            help="Another name or address for the server certificate (first start; repeatable)",
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            envvar="SM_REDIS_URL",
            help="Use this Redis instead of starting a private redis-server",
            show_default=False,
        ),
    ] = None,
    agent: Annotated[
        bool,
        typer.Option(
            "--agent/--no-agent",
            help="Enroll and run a node agent for this machine (state in <data dir>/agent)",
        ),
    ] = True,
    web: Annotated[
        bool,
        typer.Option(
            "--web/--no-web",
            help="Serve the web client (sm-client --web) on 127.0.0.1, the port after the gateway's",
        ),
    ] = True,
    max_restarts: Annotated[
        int, typer.Option(min=0, help="Restarts of a failing child before everything stops")
    ] = 5,
    ready_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for every process to be ready")
    ] = 60.0,
) -> None:
    """Start everything for one machine: Redis, the APIs, the gateway, the worker, an agent,
    the web client."""
    from sm_ctl.launcher import UpFailed, UpOptions, run_up

    options = UpOptions(
        data_dir=_data(data_dir).root,
        host=host,
        port=port,
        names=tuple(name or ()),
        redis_url=redis_url,
        agent=agent,
        web=web,
        max_restarts=max_restarts,
        ready_timeout=ready_timeout,
    )
    _say(f"Starting Server Manager on {options.data_dir} …")
    try:
        asyncio.run(run_up(options, _report_started, _notify))
    except UpFailed as exc:
        raise _fail(str(exc)) from None
    _say("Stopped.")


def _notify(message: str) -> None:
    err.print(escape(message), style="yellow")


def _report_started(started: Started) -> None:
    where = started.endpoints
    root = started.data.root
    _say()
    if started.first_start:
        _say(f"First start: created the CA, the keys and the certificate in {root}")
    _print_keys(started.keys)
    _say()
    _say(banner.line(banner.API, where.api))
    _say(banner.line(banner.GATEWAY, where.gateway))
    if started.web:
        _say(banner.line(banner.WEB, started.web))
    redis = "private redis-server" if started.private_redis else "SM_REDIS_URL"
    _say(banner.line("Redis", f"{started.redis_url} ({redis})"))
    _say(banner.line("Data directory", f"{root} (logs in {root / 'logs'})"))
    for label, note in started.notes:
        _say(banner.line(label, note))
    processes = ", ".join(f"{name} {pid}" for name, pid in started.children.items())
    _say(banner.line(banner.PROCESSES, processes))
    _say()
    _say(banner.ready_line(started.seconds), style="bold green")


@app.command()
def serve(
    service: Annotated[Service, typer.Argument(help="What to run (api = the three HTTP APIs)")],
    data_dir: DataDirOption = None,
    host: Annotated[str, typer.Option(envvar="SM_HOST", help="Listen address")] = "0.0.0.0",
    port: Annotated[
        int | None,
        typer.Option(
            envvar="SM_PORT",
            help="Listen port [default: the service's own: registry 8101, metrics 8102, "
            "commands 8103, gateway 8104, api 8700]",
            show_default=False,
        ),
    ] = None,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls/--no-tls",
            envvar="SM_TLS",
            help="TLS with the data directory's certificate (--no-tls behind a proxy that terminates TLS)",
        ),
    ] = True,
) -> None:
    """Run one service alone in the foreground (containers, systemd)."""
    # connexion 3.3 imports starlette.testclient, which warns that it will drop
    # httpx (upstream; no code path of ours uses the test client).
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    data = _data(data_dir)
    try:
        require_key_material(data)
    except MissingKeyMaterial as exc:
        raise _fail(str(exc)) from None
    listener = Listener(host, port if port is not None else default_port(service), tls)
    if service is Service.WORKER:
        from sm_ctl import worker

        worker.run(data.root)
        return
    if service is Service.METRICS_INGEST:
        from sm_metrics.ingest import main as ingest
        from sm_metrics.settings import MetricsSettings

        ingest(MetricsSettings(data_dir=data.root))
        return
    if service is Service.COMMANDS_CONSUMER:
        from sm_commands.consumer import main as consume
        from sm_commands.settings import CommandsSettings

        consume(CommandsSettings(data_dir=data.root))
        return
    if service is Service.GATEWAY:
        from sm_ctl import gateway

        gateway.serve(listener, data)
        return
    # Only the HTTP services need Connexion, uvicorn and the service packages.
    from sm_ctl import services

    if service is Service.API:
        services.serve_http(services.combined_app(data.root), listener, data)
    else:
        services.serve_http(services.api_app(service, data.root), listener, data)


@keys_app.command("show")
def keys_show(data_dir: DataDirOption = None) -> None:
    """Print the enrollment key, the secret key and the CA fingerprint."""
    data = _data(data_dir)
    try:
        require_key_material(data)
    except MissingKeyMaterial as exc:
        raise _fail(str(exc)) from None
    _print_keys(current_keys(data))


@keys_app.command("rotate")
def keys_rotate(
    which: Annotated[Rotatable, typer.Argument(help="Which key to replace")] = Rotatable.ALL,
    data_dir: DataDirOption = None,
) -> None:
    """Replace a key. Enrolled nodes keep working (each holds its own credential)."""
    data = _data(data_dir)
    try:
        require_key_material(data)
    except MissingKeyMaterial as exc:
        raise _fail(str(exc)) from None
    rotation = rotate(data, which)
    if rotation.enrollment is not None:
        _say(banner.line("New enrollment key (for nodes)", str(rotation.enrollment), 32))
    if rotation.secret is not None:
        _say(banner.line("New secret key (for the client)", str(rotation.secret), 32))
    if rotation.signing_kid is not None:
        _say(
            banner.line(
                "New token signing key",
                f"kid {rotation.signing_kid} (tokens signed with the previous key "
                "stay valid until they expire)",
                32,
            )
        )


@app.command()
def backup(
    data_dir: DataDirOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Archive to write [default: ./server-manager-backup-<UTC time>.tar.gz]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Back up every service database (online, consistent) and the keys into one archive."""
    from sm_ctl import archive

    data = _data(data_dir)
    target = output or Path(archive.default_backup_name())
    try:
        manifest = archive.create_backup(data, target)
    except archive.ArchiveError as exc:
        raise _fail(str(exc)) from None
    agent = any(f.kind == "agent" for f in manifest.files)
    _say(
        f"Wrote {target} (mode 0600): databases {', '.join(manifest.databases) or 'none'}, "
        f"{sum(f.kind == 'key' for f in manifest.files)} key files"
        + (", the local agent's identity" if agent else "")
    )


@app.command()
def restore(
    archive_file: Annotated[Path, typer.Argument(metavar="FILE", help="A backup archive")],
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar="SM_DATA_DIR", help="The directory to restore into"),
    ],
    force: Annotated[
        bool,
        typer.Option("--force", help="Restore into a non-empty directory (replacing its data)"),
    ] = False,
) -> None:
    """Restore a backup into an empty data directory (checksums verified first)."""
    from sm_ctl import archive

    target = _data(data_dir)
    if lock.in_use(target.root):
        raise _fail(f"{target.root} is in use by a running `smctl up`; stop it first")
    try:
        manifest = archive.restore_backup(archive_file, target, force=force)
    except archive.ArchiveError as exc:
        raise _fail(str(exc)) from None
    _say(
        f"Restored the backup of {manifest.created_at} into {target.root} "
        f"(databases {', '.join(manifest.databases) or 'none'}); start it with `smctl up --data-dir {target.root}`"
    )

"""The edge proxy's configuration, generated from the route table.

``deploy/nginx.conf`` is the output of this script for the container
deployment (docker-compose.yml); it is committed, and a test checks that it
equals what the route table (:data:`sm_shared.routes.ROUTES`) and the
services' body limit produce today. After changing either, run::

    uv run python deploy/nginx_config.py            # rewrite deploy/nginx.conf
    uv run python deploy/nginx_config.py --check    # exit 1 when it is stale

The script depends on ``sm_shared`` only (not on ``smctl``), so it runs in
any checkout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sm_shared.routes import (
    DEFAULT_PORTS,
    ROUTES,
    SERVICES,
    WEB_CLIENT,
    WEB_PORT,
    WEB_PREFIX,
    Service,
)
from sm_shared.settings import CoreSettings

CONFIG_PATH = Path(__file__).with_name("nginx.conf")

# Services whose routes carry WebSockets (agents on /agent/ws, clients on /events/ws).
WEBSOCKET_SERVICES: frozenset[Service] = frozenset({"gateway"})

# A WebSocket stays open for as long as the agent runs; heartbeats (5 s) and the
# websockets library's pings (20 s) keep it busy, so this only ends dead links.
WEBSOCKET_TIMEOUT = "3600s"

# Upstream certificates are issued by the core CA for localhost, 127.0.0.1, the
# host name and configured names; "localhost" is in every one of them.
UPSTREAM_TLS_NAME = "localhost"


def body_limit() -> int:
    """The services' request-body limit (``SM_MAX_BODY_BYTES``'s default)."""
    limit = CoreSettings.model_fields["max_body_bytes"].default
    assert isinstance(limit, int)
    return limit


@dataclass(frozen=True)
class EdgeProfile:
    """Where the edge listens and where each service is.

    ``upstreams`` maps a service to ``host:port``. Host names are resolved per
    request through ``resolver`` (the proxy_pass target is a variable), so a
    restarted container's new address is found; IP literals need no resolver.
    ``web`` is the web client's ``host:port`` (plain HTTP), which gets every
    path the route table does not claim; without it those paths are a 404
    problem from the proxy itself.
    """

    listen: str
    upstreams: Mapping[Service, str]
    resolver: str | None
    web: str | None = None


# Docker's embedded DNS server answers for the compose service names.
COMPOSE = EdgeProfile(
    listen="8443",
    upstreams={service: f"{service}:{DEFAULT_PORTS[service]}" for service in SERVICES},
    resolver="127.0.0.11",
    web=f"{WEB_CLIENT}:{WEB_PORT}",
)


def _problem(status: int, title: str, detail: str) -> str:
    """An nginx ``return`` answering with an RFC 9457 problem document."""
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        separators=(",", ":"),
    )
    assert "'" not in body  # the body goes into a single-quoted nginx string
    return f"return {status} '{body}';"


def _websocket() -> list[str]:
    return [
        "            proxy_http_version 1.1;",
        "            proxy_set_header Upgrade $http_upgrade;",
        "            proxy_set_header Connection $connection_upgrade;",
        f"            proxy_read_timeout {WEBSOCKET_TIMEOUT};",
        f"            proxy_send_timeout {WEBSOCKET_TIMEOUT};",
        "            proxy_buffering off;",
    ]


def _fallback(web: str | None) -> list[str]:
    """The location of every path no route claims: the web client, or a 404 problem."""
    if web is None:
        return [
            f"        location {WEB_PREFIX} {{",
            "            default_type application/problem+json;",
            "            " + _problem(404, "Not Found", "no service serves this path"),
            "        }",
        ]
    return [
        "        # The web client (sm-client --web): its app and its WebSocket (/ws).",
        "        # Plain HTTP: Flet's server has no TLS (its network reaches only this proxy).",
        f"        location {WEB_PREFIX} {{",
        f"            set $web {web};",
        "            proxy_pass http://$web;",
        "            proxy_set_header Host $host;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        *_websocket(),
        "        }",
    ]


def _location(prefix: str, service: Service, upstream: str) -> list[str]:
    lines = [
        f"        location {prefix} {{",
        f"            set $upstream {upstream};",
        "            proxy_pass https://$upstream;",
        "            proxy_set_header Host $host;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
    ]
    if service in WEBSOCKET_SERVICES:
        lines += _websocket()
    lines.append("        }")
    return lines


def render(profile: EdgeProfile) -> str:
    """The whole nginx configuration for ``profile``."""
    limit = body_limit()
    resolver = (
        [
            "    # Upstream names are resolved per request (proxy_pass takes a variable),",
            "    # so a service container that restarts with a new address is found.",
            f"    resolver {profile.resolver} valid=10s ipv6=off;",
            "",
        ]
        if profile.resolver
        else []
    )
    locations: list[str] = []
    for prefix, service in ROUTES:
        locations += _location(prefix, service, profile.upstreams[service])
        locations.append("")
    lines = [
        "# GENERATED by deploy/nginx_config.py from sm_shared.routes.ROUTES: do not edit.",
        "# After changing the route table run: uv run python deploy/nginx_config.py",
        "#",
        "# The edge proxy of the container deployment. It terminates TLS with a",
        "# certificate from the core CA and routes by path prefix (longest wins,",
        "# as in sm_shared.routes.service_for) to the services; every other path",
        "# goes to the web client (sm_shared.routes.WEB_PREFIX).",
        "#",
        "# Behind it the services keep TLS on (their default) and the proxy verifies",
        "# them against the core CA: tokens, node credentials and enrollment keys never",
        "# cross the internal network in clear, and nothing needs a --no-tls mode.",
        "#",
        "# Paths: run as `nginx -p /tmp/nginx/ -c /etc/nginx/nginx.conf`. The pid file",
        "# and temporary files are relative to the prefix (a tmpfs, so the container's",
        "# root file system stays read-only); tls/ is relative to this file's folder",
        "# and holds server.pem, server-key.pem and ca.pem from the core's data dir.",
        "",
        "worker_processes auto;",
        "pid nginx.pid;",
        "error_log stderr warn;",
        "",
        "events {",
        "    # Two connections per agent (client side and upstream side).",
        "    worker_connections 16384;",
        "}",
        "",
        "http {",
        "    default_type application/octet-stream;",
        "    server_tokens off;",
        "    access_log /dev/stdout;",
        "",
        "    client_body_temp_path client_body;",
        "    proxy_temp_path proxy;",
        "    fastcgi_temp_path fastcgi;",
        "    uwsgi_temp_path uwsgi;",
        "    scgi_temp_path scgi;",
        "",
        *resolver,
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        ''      close;",
        "    }",
        "",
        "    server {",
        f"        listen {profile.listen} ssl;",
        "        server_name _;",
        "",
        "        ssl_certificate tls/server.pem;",
        "        ssl_certificate_key tls/server-key.pem;",
        "        ssl_protocols TLSv1.2 TLSv1.3;",
        "        ssl_session_cache shared:edge_tls:10m;",
        "        ssl_session_timeout 1h;",
        "",
        "        # The services' own limit (SM_MAX_BODY_BYTES); both answer 413 problem+json.",
        f"        client_max_body_size {limit};",
        "",
        "        proxy_ssl_verify on;",
        "        proxy_ssl_trusted_certificate tls/ca.pem;",
        f"        proxy_ssl_name {UPSTREAM_TLS_NAME};",
        "        proxy_ssl_session_reuse on;",
        "",
        "        error_page 413 @payload_too_large;",
        "        error_page 502 503 504 =503 @unavailable;",
        "",
        *locations,
        *_fallback(profile.web),
        "",
        "        location @payload_too_large {",
        "            default_type application/problem+json;",
        "            "
        + _problem(413, "Request Entity Too Large", f"request bodies are limited to {limit} bytes"),
        "        }",
        "",
        "        location @unavailable {",
        "            default_type application/problem+json;",
        "            " + _problem(503, "Service Unavailable", "the service is not reachable"),
        "        }",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when deploy/nginx.conf is stale"
    )
    args = parser.parse_args(argv)
    expected = render(COMPOSE)
    if args.check:
        current = CONFIG_PATH.read_text() if CONFIG_PATH.exists() else ""
        if current != expected:
            print(f"{CONFIG_PATH} is stale: run uv run python {__file__}", file=sys.stderr)
            return 1
        return 0
    CONFIG_PATH.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A connection to a running core, for the commands that use its API (nodes, run, audit).

Where: ``--server URL`` (``SM_SERVER``) and ``--key SECRET`` (``SM_SECRET_KEY``).
Without them, the core ``smctl up`` runs on this machine from the data
directory (``--data-dir``/``SM_DATA_DIR``, default as for ``up``): its API URL
is the one ``up`` last wrote into the local agent's ``agent/agent.toml``
(``https://127.0.0.1:8700`` when there is none) and its secret key is
``secret.key`` (readable by the user who runs ``up``).

Trust: the secret key names the core's CA by its fingerprint
(``sm_client.trust``); the CA is fetched once, checked against it and kept in
``$XDG_CONFIG_HOME/server-manager/ca/<fingerprint>.pem``. Then the key is
exchanged for an admin access token at the registry's token endpoint.

Live events: the gateway serves ``/events/ws``. Behind a proxy it shares the
API's origin; ``up`` puts it on the next port. The candidates are tried in
this order: ``SM_EVENTS_URL``, the local ``up``'s gateway (from
``agent.toml``, when talking to that core), the API's origin, the API's port
+ 1. None answering is not an error: callers re-sync over REST anyway.

Failures are :class:`RemoteError` with a message for people (the API's problem
title and detail), never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tomllib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import typer

from sm_shared.datadir import DataDir, default_data_dir

DEFAULT_SERVER: Final = "https://127.0.0.1:8700"
TIMEOUT: Final = 30.0
EVENTS_OPEN_TIMEOUT: Final = 5.0

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="SM_SERVER",
        help="The core's API URL [default: the local `smctl up`'s]",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="SM_SECRET_KEY",
        help="The secret key (sms1.…) [default: the local `smctl up`'s]",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SM_DATA_DIR",
        help="The local `smctl up`'s data directory [default: $XDG_DATA_HOME/server-manager]",
        show_default=False,
    ),
]


class RemoteError(Exception):
    """A request could not be made or was refused; the message says why, for people."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def problem_message(status: int, body: Any, fallback: str) -> str:
    """``Title: detail`` of a problem document (plus where a selector error points)."""
    if not isinstance(body, dict):
        return f"HTTP {status}: {fallback}".rstrip(": ")
    if "error" in body:  # RFC 6749
        return f"{body['error']}: {body.get('error_description', '')}".rstrip(": ")
    title = str(body.get("title") or f"HTTP {status}")
    detail = str(body.get("detail") or "")
    text = f"{title}: {detail}" if detail else title
    where = [f"{name} {body[name]}" for name in ("position", "pointer") if name in body]
    return f"{text} ({', '.join(where)})" if where else text


def ca_cache(fingerprint: bytes) -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "server-manager" / "ca" / f"{fingerprint.hex()}.pem"


@dataclass(frozen=True)
class Endpoint:
    """Where the core is and how to prove who we are."""

    server: str
    secret_key: str
    events_urls: tuple[str, ...] = ()


def _local_config(data: DataDir) -> dict[str, Any]:
    config = data.root / "agent" / "agent.toml"
    try:
        return tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _origin(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    return f"{parts.scheme}://{parts.netloc}"


def endpoint(server: str | None, key: str | None, data_dir: Path | None) -> Endpoint:
    """The core to talk to, from the options or else the local ``up``'s data directory."""
    from sm_client.live import events_candidates

    data = DataDir((data_dir or default_data_dir()).expanduser().absolute())
    config = _local_config(data)
    local_server = str(config.get("server") or DEFAULT_SERVER)
    chosen = server or local_server
    local_gateway = config.get("gateway_urls")
    same_core = _origin(chosen) == _origin(local_server)
    gateway = str(local_gateway) if same_core and local_gateway else None
    if key is None:
        try:
            key = data.secret_key.read_text().strip()
        except OSError:
            raise RemoteError(
                "no secret key: pass --key or set SM_SECRET_KEY (`smctl up` prints it; "
                f"on its machine it is in {data.secret_key})"
            ) from None
    return Endpoint(chosen, key, events_candidates(chosen, gateway))


@dataclass
class Remote:
    """An authenticated session with the core's API."""

    origin: str
    tls: ssl.SSLContext
    token: str
    events_urls: tuple[str, ...]
    http: Any = field(repr=False)

    @classmethod
    async def connect(cls, where: Endpoint) -> Remote:
        import httpx

        from sm_client.api import ApiError, CoreApi
        from sm_client.trust import MalformedKey, TrustError, bootstrap, core_origin
        from sm_client.trust import parse_secret_key as parse

        try:
            key = parse(where.secret_key)
            origin = core_origin(where.server)
            tls = await bootstrap(origin, key, ca_cache(key.fingerprint))
        except MalformedKey as exc:
            raise RemoteError(f"the secret key is not usable: {exc}") from None
        except TrustError as exc:
            raise RemoteError(str(exc)) from None
        except OSError as exc:
            raise RemoteError(f"cannot keep the core's CA certificate: {exc}") from None
        try:
            async with CoreApi(origin, tls) as api:
                token = await api.token_from_secret_key(where.secret_key)
        except ApiError as exc:
            if exc.status == 0:
                raise RemoteError(exc.detail) from None
            if exc.code == "invalid_client":
                raise RemoteError(
                    f"the core at {origin} refused the secret key (rotated? another core's?): "
                    f"{exc.detail}",
                    exc.status,
                ) from None
            raise RemoteError(f"{exc.code}: {exc.detail}", exc.status) from None
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {origin}: {exc}") from None
        http = httpx.AsyncClient(
            base_url=origin,
            verify=tls,
            timeout=TIMEOUT,
            trust_env=False,
            headers={"Authorization": f"Bearer {token.token}"},
        )
        return cls(origin, tls, token.token, where.events_urls, http)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """The JSON answer of one request; RemoteError with the problem's text otherwise."""
        import httpx

        try:
            response = await self.http.request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            raise RemoteError(f"{method} {path} failed: {exc or type(exc).__name__}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            message = problem_message(response.status_code, body, response.reason_phrase)
            raise RemoteError(message, response.status_code)
        if not response.content:
            return None
        return response.json()

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request(
            "GET", path, params={k: v for k, v in params.items() if v is not None}
        )

    async def post(self, path: str, body: Any = None) -> Any:
        return await self.request("POST", path, json=body)

    @contextlib.asynccontextmanager
    async def events(self, *topics: str) -> AsyncIterator[Any | None]:
        """An ``/events/ws`` connection subscribed to ``topics`` (None when no gateway answers).

        Yields the websockets connection: iterate it for the messages (JSON text).
        """
        import orjson
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        socket = None
        for url in self.events_urls:
            try:
                socket = await connect(
                    url,
                    ssl=self.tls,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=EVENTS_OPEN_TIMEOUT,
                    max_size=4 * 1024 * 1024,
                )
            except (OSError, TimeoutError, WebSocketException):
                continue
            try:
                await socket.send(
                    orjson.dumps({"type": "subscribe", "id": "1", "topics": list(topics)}).decode()
                )
                answer = orjson.loads(await socket.recv())
            except (OSError, TimeoutError, WebSocketException, orjson.JSONDecodeError):
                await socket.close()
                socket = None
                continue
            if answer.get("type") != "subscribed":
                await socket.close()
                socket = None
                continue
            break
        try:
            yield socket
        finally:
            if socket is not None:
                await socket.close()

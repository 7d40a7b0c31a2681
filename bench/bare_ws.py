"""The raw baseline: a bare ``websockets`` server that only receives and parses.

Run: ``uv run python bench/bare_ws.py --data-dir DIR --port PORT`` (benchmarks start it themselves).

Same TLS (the data directory's server certificate), same library, compression
off and the same frame limit as the gateway. Every text frame is parsed with
orjson and counted; a ``hello`` is answered with a ``welcome`` so the swarm's
agents start sending. No authentication, no validation, no Redis, no acks.
``GET /stats`` answers the counters as JSON (connections, messages).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import ssl
import subprocess
import sys
import time
from asyncio import sslproto
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import httpx
import orjson
from harness import HERE, free_port
from procstat import raise_fd_limit
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sm_shared.datadir import DataDir

MAX_SIZE = 128 * 1024


class Counters:
    def __init__(self, interval: float) -> None:
        self.connections = 0
        self.messages = 0
        self.welcome = orjson.dumps(
            {
                "v": 1,
                "type": "welcome",
                "node_id": "bare",
                "heartbeat_interval": interval,
                "backlog_rate": 10,
            }
        ).decode()

    async def handler(self, connection: ServerConnection) -> None:
        self.connections += 1
        try:
            async for raw in connection:
                message = orjson.loads(raw)
                self.messages += 1
                if message.get("type") == "hello":
                    await connection.send(self.welcome)
        except ConnectionClosed:
            pass
        finally:
            self.connections -= 1

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/stats":
            body = orjson.dumps({"connections": self.connections, "messages": self.messages})
            return connection.respond(HTTPStatus.OK, body.decode())
        return None


def set_tls_read_buffer(size: int) -> None:
    """asyncio's TLS transport reads into a buffer of ``SSLProtocol.max_size`` bytes, one per
    connection, allocated and zeroed up front: 256 KiB in Python 3.11, most of the memory of
    an idle TLS connection. Heartbeats are ~1 KB: a smaller buffer only means more reads for
    a large burst."""
    sslproto.SSLProtocol.max_size = size


async def main_async(args: argparse.Namespace) -> None:
    data = DataDir(args.data_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(data.server_cert, data.server_key)
    counters = Counters(args.interval)
    raise_fd_limit()
    if args.tls_read_buffer:
        set_tls_read_buffer(args.tls_read_buffer)
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    async with serve(
        counters.handler,
        "127.0.0.1",
        args.port,
        ssl=context,
        compression=None,
        max_size=MAX_SIZE,
        process_request=counters.process_request,
        server_header=None,
    ):
        print(f"bare server on wss://127.0.0.1:{args.port}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await stop


@dataclass(frozen=True)
class Bare:
    """A running bare server: its agent URL and pid."""

    url: str
    pid: int
    stats_url: str
    verify: ssl.SSLContext

    def stats(self) -> dict[str, int]:
        body: dict[str, int] = httpx.get(self.stats_url, verify=self.verify, timeout=10).json()
        return body


@contextmanager
def bare_server(
    data: DataDir, interval: float, tls_read_buffer: int | None = None
) -> Iterator[Bare]:
    """Run this module as a separate process on a free port until the block ends."""
    port = free_port()
    argv = [sys.executable, str(HERE / "bare_ws.py"), "--data-dir", str(data.root)]
    if tls_read_buffer:
        argv += ["--tls-read-buffer", str(tls_read_buffer)]
    proc = subprocess.Popen([*argv, "--port", str(port), "--interval", str(interval)])
    verify = ssl.create_default_context(cafile=str(data.ca_cert))
    bare = Bare(
        f"wss://127.0.0.1:{port}/agent/ws", proc.pid, f"https://127.0.0.1:{port}/stats", verify
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                bare.stats()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the bare server did not start") from None
                time.sleep(0.1)
        yield bare
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--interval", type=float, default=5.0, help="heartbeat interval the welcome names"
    )
    p.add_argument(
        "--tls-read-buffer",
        type=int,
        default=None,
        help="bytes of asyncio's per-connection TLS read buffer (default: asyncio's 256 KiB)",
    )
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()

"""What every benchmark here needs: free ports, an app under uvicorn, wrk, a private Redis.

Benchmarks run apps as separate processes (one uvicorn worker, no access log)
so the load generator never shares an interpreter with the server.
"""

from __future__ import annotations

import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sm_shared.tokens import InvalidToken, TokenVerifier

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served(app: str, probe_path: str, env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """Run ``module:factory`` (from this folder) under uvicorn; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            app,
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ],
        cwd=HERE,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + probe_path, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{app} did not start") from None
                time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        proc.wait()


def wrk(url: str, token: str, seconds: int, connections: int = 32) -> float:
    """Requests per second ``wrk`` (Debian) sustains on ``url``; any non-2xx answer fails."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Authorization: Bearer {token}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw failed responses:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def report(rates: dict[str, list[float]], baseline: str) -> None:
    """Print each app's median rate and its ratio to ``baseline``'s."""
    base = statistics.median(rates[baseline])
    for name, values in rates.items():
        rate = statistics.median(values)
        listed = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:24} {rate:8.0f} req/s  ratio {rate / base:.2f}  (rounds: {listed})")


@contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A redis-server on a free port, nothing kept on disk; yields its URL (db 0)."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is needed (./sm test installs it)"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait()


def bearer_refusal(request: Request, verifier: TokenVerifier, scope: str) -> Response | None:
    """The raw baselines' JWT check: None when the bearer token holds ``scope``."""
    _, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        claims = verifier.verify(token)
    except InvalidToken:
        return JSONResponse({"title": "Unauthorized"}, status_code=401)
    if scope not in claims.scopes:
        return JSONResponse({"title": "Forbidden"}, status_code=403)
    return None

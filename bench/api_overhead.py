"""Throughput of the service frame against a bare Starlette route with the same JWT check.

Run: ``uv run python bench/api_overhead.py [--seconds 10] [--rounds 3]``
Each app runs under uvicorn (one worker, no access log) and ``wrk`` (Debian)
drives it with 32 connections from one thread; rounds alternate the apps and
the median is reported with its ratio to the bare Starlette baseline.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.tokens import issue_access_token

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(factory: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"overhead_apps:{factory}",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env=env,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/ping", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{factory} did not start")


def wrk(url: str, token: str, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed responses:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = DataDir(Path(tmp))
        initialize(data)
        token = issue_access_token(
            data, subject="bench", client_id="bench", scopes=["nodes:read"], ttl=3600
        )
        env = {**os.environ, "SM_DATA_DIR": tmp}
        results: dict[str, list[float]] = {
            "starlette_app": [],
            "connexion_untuned_app": [],
            "connexion_app": [],
        }
        for _ in range(args.rounds):
            for factory in results:
                port = free_port()
                proc = start(factory, port, env)
                try:
                    results[factory].append(
                        wrk(f"http://127.0.0.1:{port}/api/v1/ping?limit=10", token, args.seconds)
                    )
                finally:
                    proc.terminate()
                    proc.wait()
        base = statistics.median(results["starlette_app"])
        for factory, rounds in results.items():
            rate = statistics.median(rounds)
            listed = ", ".join(f"{r:.0f}" for r in rounds)
            print(f"{factory:24} {rate:8.0f} req/s  ratio {rate / base:.2f}  (rounds: {listed})")


if __name__ == "__main__":
    main()

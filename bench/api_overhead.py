"""Throughput of the service frame against a bare Starlette route with the same JWT check.

Run: ``uv run python bench/api_overhead.py [--seconds 10] [--rounds 3]``
Each app (``overhead_apps``) runs under uvicorn and ``wrk`` drives it with 32
connections from one thread; rounds alternate the apps, and each app's median
is reported with its ratio to the bare Starlette baseline.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from harness import report, served, wrk

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.tokens import issue_access_token

APPS = ("starlette_app", "connexion_untuned_app", "connexion_app")


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
        rates: dict[str, list[float]] = {app: [] for app in APPS}
        for _ in range(args.rounds):
            for app in APPS:
                with served(f"overhead_apps:{app}", "/api/v1/ping", env) as base:
                    rates[app].append(wrk(f"{base}/api/v1/ping?limit=10", token, args.seconds))
        report(rates, "starlette_app")


if __name__ == "__main__":
    main()

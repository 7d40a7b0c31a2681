"""How long ``smctl up`` takes from exec to ready, against the floor of any Python core.

Run: ``uv run python bench/up_start.py [--runs 5]``

"Ready" is ``up``'s own ready line: key material exists, Redis answers, the API,
gateway and worker processes answer their probes and the local agent is
online. Each run starts on a fresh data directory (first start: CA, keys) and
then once more on the same one (a restart). The raw baseline, measured in the
same run, is one interpreter importing what the API process imports
(Connexion, SQLAlchemy, the registry) and exiting: no core can be ready sooner.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sm_ctl.instance import UpProcess, free_port_pair

BASELINE = "import connexion, sqlalchemy, redis, sm_registry, sm_metrics, sm_commands"


def baseline() -> float:
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", BASELINE], check=True)
    return time.monotonic() - began


def up_once(data_dir: Path) -> float:
    up = UpProcess.start(data_dir, free_port_pair())
    try:
        up.wait_ready(within=120)
        assert up.ready_after is not None
        return up.ready_after
    finally:
        up.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    first: list[float] = []
    again: list[float] = []
    floor: list[float] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            floor.append(baseline())
            first.append(up_once(Path(tmp) / "data"))
            again.append(up_once(Path(tmp) / "data"))
    base = statistics.median(floor)
    for name, values in [
        ("import baseline", floor),
        ("up, first start", first),
        ("up, restart", again),
    ]:
        median = statistics.median(values)
        listed = ", ".join(f"{v:.2f}" for v in values)
        print(f"{name:16} median {median:5.2f} s  ratio {median / base:4.1f}  (runs: {listed})")


if __name__ == "__main__":
    main()

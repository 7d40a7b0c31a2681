"""A whole core for a benchmark: ``smctl up --no-agent`` on a kept data directory.

The data directory is kept between runs (default under ``/tmp/sm-bench``) so
the swarm's enrolled credentials stay valid and reruns skip enrollment; Redis
is ``up``'s private one, empty at every start. The banner names the API, the
gateway and each child's pid (the gateway's is what the benchmarks measure).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sm_ctl.banner import Banner
from sm_ctl.instance import UpProcess, free_port_pair

DEFAULT_ROOT = Path(tempfile.gettempdir()) / "sm-bench"


@contextmanager
def running_core(data_dir: Path, env: dict[str, str] | None = None) -> Iterator[Banner]:
    up = UpProcess.start(data_dir, free_port_pair(), "--no-agent", env=env)
    try:
        ready = up.wait_ready(within=180)
        print(f"core ready: API {ready.api_url}, gateway {ready.gateway_url}, {ready.processes}")
        yield ready
    finally:
        up.stop(within=60)


def bench_parser(doc: str | None, name: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring as help, ``--data-dir`` kept under ``name``."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_ROOT / name,
        help="the core's data directory, kept between runs (cached enrollments, fills)",
    )
    return parser

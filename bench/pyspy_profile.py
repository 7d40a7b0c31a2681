"""Where a running process spends its time: ``py-spy record`` against its pid, summarised.

py-spy is not a project dependency: install it for the user with
``uv tool install py-spy`` (PyPI). :func:`profiled` records in the background
(``--format raw``: collapsed stacks, ``--idle`` off so waiting in the event
loop is not counted as work); :func:`summary` lists the functions holding the
most samples, by own time and by inclusive time.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def profiled(pid: int, output: Path, rate: int = 100) -> Iterator[bool]:
    """Record ``pid`` while the block runs; yields False (records nothing) without py-spy."""
    binary = shutil.which("py-spy")
    if binary is None:
        print("py-spy not found (uv tool install py-spy): no profile")
        yield False
        return
    proc = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield True
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _frame(raw: str) -> str:
    """``function (path/to/module.py:123)`` → ``function (module.py)``."""
    name, _, where = raw.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name


def summary(collapsed: Path, top: int = 15) -> list[str]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not collapsed.exists():
        return ["(py-spy wrote no profile)"]
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples (busy only)", "own time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("inclusive time (frames under 90 %: below the event loop and entry points):")
    below = [(frame, n) for frame, n in inclusive.most_common() if n < 0.9 * total]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in below[:top]]
    return lines

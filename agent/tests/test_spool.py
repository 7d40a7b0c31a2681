"""The offline buffer: kept until acknowledged, across restarts and kill -9, bounded, compacted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sm_agent import spool as spool_module
from sm_agent.spool import Spool


def beat(seq: int, pad: int = 0) -> bytes:
    return json.dumps({"type": "heartbeat", "seq": seq, "pad": "x" * pad}).encode()


def test_heartbeats_stay_until_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    serials = [spool.append(beat(i)) for i in range(5)]
    assert serials == [0, 1, 2, 3, 4]
    assert len(spool) == 5
    assert spool.size_bytes == sum(len(beat(i)) for i in range(5))
    assert spool.read(3) == beat(3)
    assert spool.acknowledge([1, 3, 3, 99]) == 2  # twice, or unknown: counted once, or not
    assert spool.serials() == [0, 2, 4]
    assert spool.read(3) is None
    assert spool.next_buffered(0, 5) == 2
    assert spool.next_buffered(2, 4) is None
    assert spool.serials(2, 4) == [2]
    spool.close()


def test_the_buffer_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(6):
        spool.append(beat(i))
    spool.acknowledge([0, 1, 4])
    spool.close()

    again = Spool(tmp_path)
    assert again.serials() == [2, 3, 5]
    assert [again.read(s) for s in again.serials()] == [beat(2), beat(3), beat(5)]
    assert again.append(beat(6)) == 6  # serials never repeat
    assert (tmp_path / "journal").stat().st_mode & 0o777 == 0o600
    again.close()


def test_a_torn_last_record_is_cut_off(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(3):
        spool.append(beat(i))
    spool.close()
    journal = tmp_path / "journal"
    intact = journal.stat().st_size
    with journal.open("ab") as file:
        file.write(b'3 {"type": "heartb')  # the agent died in the middle of a write
    again = Spool(tmp_path)
    assert again.serials() == [0, 1, 2]
    assert journal.stat().st_size == intact
    assert again.append(beat(3)) == 3
    again.close()
    assert Spool(tmp_path).serials() == [0, 1, 2, 3]


def test_a_damaged_record_ends_the_journal_there(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append(beat(0))
    spool.close()
    with (tmp_path / "journal").open("ab") as file:
        file.write(b"garbage\n" + b"1 " + beat(1) + b"\n")
    assert Spool(tmp_path).serials() == [0]


def test_something_else_in_place_of_the_journal_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / "journal").write_bytes(b"not a journal\n")
    spool = Spool(tmp_path)
    assert len(spool) == 0
    assert spool.append(beat(0)) == 0


def test_bounded_by_count_oldest_dropped_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_entries=3)
    for i in range(5):
        spool.append(beat(i))
    assert spool.serials() == [2, 3, 4]
    assert spool.dropped == 2
    spool.close()
    again = Spool(tmp_path, max_entries=3)
    assert (again.serials(), again.dropped) == ([2, 3, 4], 2)
    again.close()
    # A smaller bound at the next start applies at once.
    smaller = Spool(tmp_path, max_entries=1)
    assert (smaller.serials(), smaller.dropped) == ([4], 4)


def test_bounded_by_bytes(tmp_path: Path) -> None:
    size = len(beat(0, pad=1000))
    spool = Spool(tmp_path, max_bytes=3 * size)
    for i in range(10):
        spool.append(beat(i % 10, pad=1000))
    assert len(spool) == 3
    assert spool.size_bytes <= 3 * size
    assert spool.dropped == 7


def test_the_newest_heartbeat_is_kept_even_when_larger_than_the_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10)
    spool.append(beat(0))
    spool.append(beat(1))
    assert spool.serials() == [1]


def test_compaction_keeps_the_journal_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "COMPACT_MIN_BYTES", 4096)
    spool = Spool(tmp_path, max_entries=50)
    for i in range(2000):
        serial = spool.append(beat(i, pad=100))
        if i % 3:  # a third stays unacknowledged (and the oldest of those get dropped)
            spool.acknowledge([serial])
    kept = spool.serials()
    dropped = spool.dropped
    assert len(kept) in (49, 50)  # the last append made room by dropping one
    assert len(kept) + dropped == 667  # only unacknowledged heartbeats are ever dropped
    # Without compaction the journal would hold all 2,000 records (~250 KB).
    assert spool.journal_bytes < 4096 + 2 * spool.size_bytes + 1024
    assert [spool.read(s) for s in kept[:2]] == [beat(kept[0], pad=100), beat(kept[1], pad=100)]
    spool.close()
    again = Spool(tmp_path, max_entries=50)
    assert again.serials() == kept
    assert again.dropped == dropped
    assert again.next_serial == 2000
    assert not (tmp_path / "journal.tmp").exists()


def test_an_unnamed_buffer_for_a_link_without_a_state_directory() -> None:
    spool = Spool(None)
    serial = spool.append(beat(0))
    assert spool.read(serial) == beat(0)
    spool.acknowledge([serial])
    assert len(spool) == 0
    spool.close()


def test_a_killed_writer_loses_no_appended_heartbeat(tmp_path: Path) -> None:
    # A real process appends, says which serial it appended, and is killed with SIGKILL.
    script = (
        "import sys, json\n"
        "from pathlib import Path\n"
        "from sm_agent.spool import Spool\n"
        "spool = Spool(Path(sys.argv[1]))\n"
        "i = 0\n"
        "while True:\n"
        "    serial = spool.append(json.dumps({'seq': i, 'pad': 'y' * 500}).encode())\n"
        "    if i % 2:\n"
        "        spool.acknowledge([serial])\n"
        "    print(serial, flush=True)\n"
        "    i += 1\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    deadline = time.monotonic() + 20
    reported = -1
    while reported < 300 and time.monotonic() < deadline:
        reported = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert reported >= 300
    spool = Spool(tmp_path)
    kept = spool.serials()
    # Every even serial reported appended is still there; odd ones were acknowledged.
    assert set(range(0, reported + 1, 2)) <= set(kept)
    assert all(s % 2 == 0 or s > reported for s in kept)
    for serial in kept:
        assert json.loads(spool.read(serial) or b"")["seq"] == serial

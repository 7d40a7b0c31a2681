"""Heartbeat messages and their sequence numbers."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from sm_agent.collectors import Sampler
from sm_agent.heartbeat import Heartbeats, SequenceNumbers

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "openapi" / "agent-protocol.json").read_text()
)


def test_sequence_counts_up_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sequence"
    first = SequenceNumbers(path, "boot-a", block=10)
    assert [first.take() for _ in range(12)] == list(range(12))
    assert path.read_text() == "boot-a 20\n"
    assert path.stat().st_mode & 0o777 == 0o600

    # A restart within the same boot never repeats a number (it skips the rest of the block).
    again = SequenceNumbers(path, "boot-a", block=10)
    assert again.take() == 20


def test_sequence_restarts_after_a_reboot(tmp_path: Path) -> None:
    path = tmp_path / "sequence"
    first = SequenceNumbers(path, "boot-a", block=10)
    for _ in range(5):
        first.take()
    assert SequenceNumbers(path, "boot-b", block=10).take() == 0


def test_a_damaged_sequence_file_starts_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "sequence"
    path.write_text("garbage")
    assert SequenceNumbers(path, "boot-a").take() == 0


def test_heartbeat_messages_match_the_protocol(tmp_path: Path) -> None:
    beats = Heartbeats(
        "boot-a", SequenceNumbers(tmp_path / "seq", "boot-a"), Sampler(), clock=lambda: 1000.123456
    )
    first, second = beats.next(1), beats.next(1)
    for message in (first, second):
        jsonschema.validate(message, SCHEMA, cls=jsonschema.Draft7Validator)
    assert (first["seq"], second["seq"]) == (0, 1)
    assert first["sent_at"] == 1000.123
    assert first["boot_id"] == "boot-a"

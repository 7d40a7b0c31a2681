"""Facts and samples as the agent sends them, checked against the protocol schema."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest

from sm_agent import __version__, facts
from sm_agent.collectors import Sampler, load, memory, uptime
from sm_agent.collectors.cpu import CpuCollector

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "openapi" / "agent-protocol.json").read_text()
)


def _validate(definition: str, value: Any) -> None:
    jsonschema.validate(
        value,
        {"definitions": SCHEMA["definitions"], "$ref": f"#/definitions/{definition}"},
        cls=jsonschema.Draft7Validator,
    )


def test_facts_match_the_protocol() -> None:
    gathered = facts.gather_facts()
    _validate("Facts", gathered)
    assert gathered["hostname"] == socket.gethostname()
    assert gathered["agent_version"] == __version__
    assert gathered["cpu_count"] == psutil.cpu_count()
    assert gathered["memory_total"] == psutil.virtual_memory().total


def test_boot_id_is_the_kernels() -> None:
    assert facts.boot_id() == facts.BOOT_ID_FILE.read_text().strip()


def test_machine_id_is_systemds() -> None:
    path = next((p for p in facts.MACHINE_ID_FILES if p.exists()), None)
    if path is None:
        pytest.skip("no machine id file on this system")
    assert facts.machine_id() == path.read_text().strip()


def test_stand_ins_where_the_files_are_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(facts, "BOOT_ID_FILE", tmp_path / "none")
    monkeypatch.setattr(facts, "MACHINE_ID_FILES", (tmp_path / "none",))
    monkeypatch.setattr(facts, "CPUINFO_FILE", tmp_path / "none")
    assert facts.boot_id() == f"boot-{int(psutil.boot_time())}"
    assert facts.machine_id().startswith("mac-")
    _validate("Facts", facts.gather_facts())


def test_addresses_leave_out_loopback_and_link_local() -> None:
    for entry in facts.addresses():
        assert not entry["address"].startswith(("127.", "::1", "fe80"))
        assert "%" not in entry["address"]


def test_cpu_model_reads_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\n")
    monkeypatch.setattr(facts, "CPUINFO_FILE", cpuinfo)
    assert facts.cpu_model() == "Test CPU @ 3.0GHz"


def test_sample_matches_the_protocol() -> None:
    sampler = Sampler()
    value = sampler.sample()
    _validate("Sample", value)
    assert value["memory"]["total"] == psutil.virtual_memory().total


def test_collectors() -> None:
    cpu = CpuCollector()
    sum(i * i for i in range(200_000))  # some work between the two measurements
    assert 0.0 <= cpu.percent() <= 100.0
    assert len(load.sample()) == 3
    mem = memory.sample()
    assert mem["available"] <= mem["total"]
    assert uptime.sample() > 0

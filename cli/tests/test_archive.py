"""Backup archives: consistent copies of live databases, verified restores."""

from __future__ import annotations

import gzip
import io
import sqlite3
import stat
import tarfile
import threading
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from sm_ctl import local_agent
from sm_ctl.archive import (
    MANIFEST,
    ArchiveError,
    create_backup,
    read_manifest,
    restore_backup,
)
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.database import create_database_engine, writer
from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize


def _fill(data: DataDir, service: str, rows: int) -> None:
    """A WAL-mode database the way the services open theirs, with ``rows`` rows."""
    engine = create_database_engine(data.database_url(service))
    try:
        with writer(engine).begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)"))
            conn.execute(
                text("INSERT INTO t (v) VALUES (:v)"), [{"v": f"row {i}"} for i in range(rows)]
            )
    finally:
        engine.dispose()


def _count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        conn.close()


def _local_agent(data: DataDir) -> dict[str, bytes]:
    """State files as ``sm-agent`` leaves them after enrolling (plus a config up writes)."""
    state = local_agent.agent_dir(data)
    state.mkdir(mode=0o700)
    files = {
        "credential": b"smn1.node-1.secret\n",
        "ca.pem": data.ca_cert.read_bytes(),
        "node.json": b'{"node_id": "node-1"}\n',
        "sequence": b"boot-1 1000\n",
    }
    for name, content in files.items():
        (state / name).write_bytes(content)
    (state / local_agent.CONFIG).write_text('server = "https://old:8700"\n')
    return files


def test_backup_and_restore_round_trip(data_dir: DataDir, tmp_path: Path) -> None:
    _fill(data_dir, "registry", 100)
    _fill(data_dir, "commands", 5)
    agent_state = _local_agent(data_dir)
    archive = tmp_path / "backup.tar.gz"
    manifest = create_backup(data_dir, archive)

    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert manifest.databases == ["registry", "commands"]  # metrics has no database yet
    assert {f.name for f in manifest.files if f.kind == "key"} == {
        f"keys/{p.name}" for p in data_dir.key_files
    }
    assert read_manifest(archive) == manifest
    assert {"sqlite", "sm-ctl", "sm-shared"} <= set(manifest.versions)

    target = DataDir(tmp_path / "restored")
    restore_backup(archive, target)
    assert _count(target.database("registry")) == 100
    assert _count(target.database("commands")) == 5
    for path in data_dir.key_files:
        restored = target.root / path.name
        assert restored.read_bytes() == path.read_bytes()
        assert stat.S_IMODE(restored.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.root.stat().st_mode) == 0o700
    # The copy stands alone: rollback journal, no WAL file needed.
    conn = sqlite3.connect(target.database("registry"))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        conn.close()
    assert load_key(target, KeyKind.SECRET) == load_key(data_dir, KeyKind.SECRET)
    # The local agent keeps its identity; up writes a fresh configuration.
    restored_state = local_agent.agent_dir(target)
    assert {p.name: p.read_bytes() for p in restored_state.iterdir()} == agent_state
    assert stat.S_IMODE(restored_state.stat().st_mode) == 0o700


def test_backup_is_consistent_while_a_writer_runs(data_dir: DataDir, tmp_path: Path) -> None:
    _fill(data_dir, "metrics", 1)
    engine = create_database_engine(data_dir.database_url("metrics"))
    stop = threading.Event()

    def write() -> None:
        # Batches of 50 rows, each committed as a whole: a consistent copy holds
        # 1 + a multiple of 50 rows, never half a batch.
        while not stop.is_set():
            with writer(engine).begin() as conn:
                conn.execute(
                    text("INSERT INTO t (v) VALUES (:v)"), [{"v": "batch"} for _ in range(50)]
                )

    thread = threading.Thread(target=write)
    thread.start()
    try:
        archives = []
        for i in range(3):
            archive = tmp_path / f"b{i}.tar.gz"
            create_backup(data_dir, archive)
            archives.append(archive)
    finally:
        stop.set()
        thread.join()
        engine.dispose()
    counts = []
    for i, archive in enumerate(archives):
        target = DataDir(tmp_path / f"r{i}")
        restore_backup(archive, target)
        counts.append(_count(target.database("metrics")))
    assert all((c - 1) % 50 == 0 for c in counts), counts
    assert counts[-1] > 1


def test_restore_refuses_a_non_empty_directory_unless_forced(
    data_dir: DataDir, tmp_path: Path
) -> None:
    _fill(data_dir, "registry", 3)
    archive = tmp_path / "backup.tar.gz"
    create_backup(data_dir, archive)

    other = DataDir(tmp_path / "other")
    initialize(other)
    _fill(other, "registry", 7)
    # A stale WAL next to the database must not survive a forced restore.
    Path(f"{other.database('registry')}-wal").write_bytes(b"stale")
    before = other.secret_key.read_bytes()
    with pytest.raises(ArchiveError, match="is not empty"):
        restore_backup(archive, other)
    assert other.secret_key.read_bytes() == before
    assert _count(other.database("registry")) == 7

    _local_agent(other)  # a node the restored registry does not know
    restore_backup(archive, other, force=True)
    assert not Path(f"{other.database('registry')}-wal").exists()
    assert not local_agent.enrolled(other)  # up enrolls a new local agent
    assert _count(other.database("registry")) == 3
    assert other.secret_key.read_bytes() == data_dir.secret_key.read_bytes()


def _rewrite(archive: Path, out: Path, change: dict[str, bytes | None]) -> None:
    """Copy ``archive`` to ``out``, replacing (or dropping, with None) members' contents."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            payload = src.extractfile(member)
            assert payload is not None
            content = payload.read()
            if member.name in change:
                replaced = change[member.name]
                if replaced is None:
                    continue
                content = replaced
            member.size = len(content)
            dst.addfile(member, io.BytesIO(content))
        for name, added in change.items():
            if added is not None and name not in src.getnames():
                info = tarfile.TarInfo(name)
                info.size = len(added)
                dst.addfile(info, io.BytesIO(added))


@pytest.fixture
def archive(data_dir: DataDir, tmp_path: Path) -> Path:
    _fill(data_dir, "registry", 10)
    path = tmp_path / "backup.tar.gz"
    create_backup(data_dir, path)
    return path


def test_a_damaged_file_is_refused_and_nothing_written(archive: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.tar.gz"
    _rewrite(archive, damaged, {"keys/secret.key": b"sms1.tampered\n"})
    target = DataDir(tmp_path / "target")
    with pytest.raises(ArchiveError, match=r"keys/secret.key does not match its checksum"):
        restore_backup(damaged, target)
    assert not target.root.exists() or not any(target.root.iterdir())
    # No staging directory is left behind either.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.tar.gz", "damaged.tar.gz", "data"]


def test_members_outside_the_manifest_are_refused(archive: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    _rewrite(archive, evil, {"../escape": b"x"})
    with pytest.raises(ArchiveError, match=r"unexpected member in the archive: \.\./escape"):
        restore_backup(evil, DataDir(tmp_path / "target"))
    assert not (tmp_path / "escape").exists()


def test_a_manifest_naming_other_files_is_refused(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        stream = tar.extractfile(MANIFEST)
        assert stream is not None
        manifest = orjson.loads(stream.read())
    manifest["files"].append(
        {"name": "keys/../../etc/passwd", "kind": "key", "size": 1, "sha256": "0"}
    )
    bad = tmp_path / "bad.tar.gz"
    _rewrite(archive, bad, {MANIFEST: orjson.dumps(manifest)})
    with pytest.raises(ArchiveError, match=r"unexpected file: keys/\.\./\.\./etc/passwd"):
        restore_backup(bad, DataDir(tmp_path / "target"))


def test_a_missing_member_is_refused(archive: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.tar.gz"
    _rewrite(archive, short, {"databases/registry.db": None})
    with pytest.raises(ArchiveError, match=r"missing: databases/registry\.db"):
        restore_backup(short, DataDir(tmp_path / "target"))


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(ArchiveError, match="not a readable backup archive"):
        restore_backup(junk, DataDir(tmp_path / "target"))
    with pytest.raises(ArchiveError, match="does not exist"):
        restore_backup(tmp_path / "absent.tar.gz", DataDir(tmp_path / "target"))


def test_backup_never_overwrites(archive: Path, data_dir: DataDir) -> None:
    before = archive.read_bytes()
    with pytest.raises(ArchiveError, match="exists"):
        create_backup(data_dir, archive)
    assert archive.read_bytes() == before


def test_backup_of_an_uninitialised_directory(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not an initialised data directory"):
        create_backup(DataDir(tmp_path / "empty"), tmp_path / "b.tar.gz")
    assert not (tmp_path / "b.tar.gz").exists()

"""Backup archives: every service database of a data directory plus its key material.

An archive is a gzip-compressed tar (mode 0600: it holds private keys)::

    manifest.json           format, creation time, versions, and per file its
                            kind, size and SHA-256
    databases/<service>.db  a consistent copy made with SQLite's online backup
                            API while the services run (rollback-journal mode,
                            so the file stands alone)
    keys/<file>             the files of ``DataDir.key_files``
    agent/<file>            the local agent's state, when ``up`` runs one
                            (its credential, pinned CA, identity, sequence)

Restoring verifies every checksum and every database before anything is
written to the target, refuses a non-empty target unless forced, and never
writes outside it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import io
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from sm_ctl import local_agent
from sm_shared.access_keys import KeyKind, MalformedKey, load_key
from sm_shared.datadir import DataDir
from sm_shared.pki import ca_fingerprint

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE_SERVICES = ("registry", "metrics", "commands")
DISTRIBUTIONS = ("sm-ctl", "sm-shared", "sm-registry", "sm-metrics", "sm-commands", "sm-gateway")
CHUNK = 1 << 20
# Each page step copies this many pages, then lets writers in (the online backup API).
PAGES_PER_STEP = 1024


class ArchiveError(RuntimeError):
    """The archive cannot be made or restored; the message says why."""


@dataclass(frozen=True)
class ArchivedFile:
    name: str
    kind: str  # "database", "key" or "agent"
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    created_at: str
    versions: dict[str, str]
    files: tuple[ArchivedFile, ...]

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "format": FORMAT,
                "created_at": self.created_at,
                "versions": self.versions,
                "files": [f.to_dict() for f in self.files],
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        try:
            doc = orjson.loads(raw)
            if doc["format"] != FORMAT:
                raise ArchiveError(
                    f"archive format {doc['format']} is not supported (this smctl reads {FORMAT})"
                )
            files = tuple(
                ArchivedFile(str(f["name"]), str(f["kind"]), int(f["size"]), str(f["sha256"]))
                for f in doc["files"]
            )
            return cls(str(doc["created_at"]), dict(doc["versions"]), files)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"the manifest is malformed: {exc}") from exc

    @property
    def databases(self) -> list[str]:
        return [Path(f.name).stem for f in self.files if f.kind == "database"]


def _versions() -> dict[str, str]:
    versions = {"sqlite": sqlite3.sqlite_version}
    for dist in DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return versions


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _allowed_names(data: DataDir) -> dict[str, str]:
    """Every member name an archive may hold → its kind."""
    names = {f"databases/{service}.db": "database" for service in DATABASE_SERVICES}
    names.update({f"keys/{path.name}": "key" for path in data.key_files})
    names.update({f"{local_agent.DIRECTORY}/{name}": "agent" for name in local_agent.STATE_FILES})
    return names


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (online backup API), standing alone."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst, pages=PAGES_PER_STEP)
        dst.execute("PRAGMA journal_mode=DELETE")
        _check_database(dst, source.name)
    finally:
        dst.close()
        src.close()


def _check_database(conn: sqlite3.Connection, name: str) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()
    if result is None or result[0] != "ok":
        raise ArchiveError(f"database {name} failed its integrity check: {result}")


def default_backup_name(now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"server-manager-backup-{stamp}.tar.gz"


def create_backup(data: DataDir, output: Path) -> Manifest:
    """Write the archive of ``data`` to ``output`` (mode 0600, never overwriting a file)."""
    missing = [path.name for path in data.key_files if not path.exists()]
    if missing:
        raise ArchiveError(
            f"{data.root} is not an initialised data directory (no {', '.join(missing)})"
        )
    if output.exists():
        raise ArchiveError(f"{output} exists; choose another --output")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".sm-backup-", dir=output.parent) as tmp:
        staging = Path(tmp)
        (staging / "databases").mkdir()
        files: list[tuple[ArchivedFile, Path]] = []
        for service in DATABASE_SERVICES:
            source = data.database(service)
            if not source.exists():
                continue
            copy = staging / "databases" / f"{service}.db"
            _copy_database(source, copy)
            files.append((_entry(f"databases/{service}.db", "database", copy), copy))
        # Small files are copied first, then hashed and archived from the copy:
        # the agent rewrites its sequence file while we work.
        small = [(f"keys/{path.name}", "key", path) for path in data.key_files]
        state = local_agent.agent_dir(data)
        small += [
            (f"{local_agent.DIRECTORY}/{name}", "agent", state / name)
            for name in local_agent.STATE_FILES
            if (state / name).exists()
        ]
        for name, kind, source in small:
            copy = staging / name
            copy.parent.mkdir(exist_ok=True)
            shutil.copyfile(source, copy)
            files.append((_entry(name, kind, copy), copy))
        manifest = Manifest(
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            versions=_versions(),
            files=tuple(entry for entry, _ in files),
        )
        partial = staging / "archive.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, MANIFEST, manifest.to_bytes())
            for entry, path in files:
                with path.open("rb") as f:
                    tar.addfile(_member(entry.name, entry.size), f)
        os.chmod(partial, 0o600)
        # A link, not a rename: fails when ``output`` appeared meanwhile.
        os.link(partial, output)
    return manifest


def _entry(name: str, kind: str, path: Path) -> ArchivedFile:
    return ArchivedFile(name, kind, path.stat().st_size, _sha256(path))


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    tar.addfile(_member(name, len(payload)), io.BytesIO(payload))


def read_manifest(archive: Path) -> Manifest:
    with _open(archive) as tar:
        return _manifest_of(tar)


@contextlib.contextmanager
def _open(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            yield tar
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise ArchiveError(f"{archive} does not exist") from exc
        raise ArchiveError(f"{archive} is not a readable backup archive: {exc}") from exc


def _manifest_of(tar: tarfile.TarFile) -> Manifest:
    try:
        member = tar.getmember(MANIFEST)
    except KeyError as exc:
        raise ArchiveError("the archive has no manifest.json: not a Server Manager backup") from exc
    stream = tar.extractfile(member)
    if stream is None:
        raise ArchiveError("manifest.json is not a regular file")
    return Manifest.from_bytes(stream.read())


def is_empty_dir(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def restore_backup(archive: Path, target: DataDir, *, force: bool = False) -> Manifest:
    """Restore ``archive`` into ``target`` (empty, or anything when ``force``).

    Everything is extracted and verified in a staging directory next to the
    target first; only then are files moved in. With ``force``, a database in
    the target is replaced together with its WAL and shared-memory files.
    """
    root = target.root
    if root.exists() and not root.is_dir():
        raise ArchiveError(f"{root} is not a directory")
    if not force and not is_empty_dir(root):
        raise ArchiveError(f"{root} is not empty; restore into an empty directory or pass --force")
    root.parent.mkdir(parents=True, exist_ok=True)
    allowed = _allowed_names(target)
    with (
        tempfile.TemporaryDirectory(prefix=f".{root.name}.restore-", dir=root.parent) as tmp,
        _open(archive) as tar,
    ):
        staging = Path(tmp)
        manifest = _manifest_of(tar)
        expected = {f.name: f for f in manifest.files}
        for name, entry in expected.items():
            if allowed.get(name) != entry.kind:
                raise ArchiveError(f"the archive lists an unexpected file: {name}")
        missing_keys = {n for n, kind in allowed.items() if kind == "key"} - set(expected)
        if missing_keys:
            raise ArchiveError(f"the archive lacks key files: {', '.join(sorted(missing_keys))}")
        seen: set[str] = set()
        for member in tar:
            if member.name == MANIFEST:
                continue
            listed = expected.get(member.name)
            if listed is None or not member.isfile():
                raise ArchiveError(f"unexpected member in the archive: {member.name}")
            if member.name in seen:
                raise ArchiveError(f"the archive holds {member.name} twice")
            seen.add(member.name)
            stream = tar.extractfile(member)
            assert stream is not None
            destination = staging / member.name  # a name from ``allowed``: no traversal
            destination.parent.mkdir(mode=0o700, exist_ok=True)
            _extract_verified(stream, destination, listed)
        absent = set(expected) - seen
        if absent:
            raise ArchiveError(
                f"files listed in the manifest are missing: {', '.join(sorted(absent))}"
            )
        for service in manifest.databases:
            conn = sqlite3.connect(staging / "databases" / f"{service}.db")
            try:
                _check_database(conn, f"{service}.db")
            finally:
                conn.close()
        _check_keys(DataDir(staging / "keys"))
        _move_into(staging, target, manifest)
    return manifest


def _extract_verified(stream: IO[bytes], path: Path, entry: ArchivedFile) -> None:
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise ArchiveError(f"{entry.name} does not match its checksum: the archive is damaged")


def _check_keys(staged: DataDir) -> None:
    """The access keys must name the CA the archive carries."""
    fingerprint = ca_fingerprint(staged.ca_cert.read_bytes())
    for kind in KeyKind:
        try:
            key = load_key(staged, kind)
        except MalformedKey as exc:
            raise ArchiveError(f"the archived {kind.name.lower()} key is malformed: {exc}") from exc
        if key.fingerprint != fingerprint:
            raise ArchiveError(
                f"the archived {kind.name.lower()} key does not match the archived CA"
            )


def _move_into(staging: Path, target: DataDir, manifest: Manifest) -> None:
    target.ensure()
    os.chmod(target.root, 0o700)
    for service in manifest.databases:
        destination = target.database(service)
        for stale in (destination, Path(f"{destination}-wal"), Path(f"{destination}-shm")):
            stale.unlink(missing_ok=True)
        shutil.move(staging / "databases" / f"{service}.db", destination)
    for path in target.key_files:
        os.replace(staging / "keys" / path.name, path)
    # The restored local agent (or none: ``up`` then enrolls a new one) replaces
    # whatever the target had; that node is not in the restored registry.
    state = local_agent.agent_dir(target)
    for name in local_agent.STATE_FILES:
        (state / name).unlink(missing_ok=True)
    agent_files = [f.name for f in manifest.files if f.kind == "agent"]
    if agent_files:
        state.mkdir(mode=0o700, exist_ok=True)
        for name in agent_files:
            os.replace(staging / name, target.root / name)

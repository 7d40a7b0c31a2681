"""The data directory: paths, private files, atomic writes."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from sm_shared.datadir import DataDir, default_data_dir, write_private
from sm_shared.first_start import initialize


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_paths_stay_inside_the_root_and_nothing_is_created(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    paths = [*data.key_files, data.database("registry"), data.redis_dir]
    assert all(p.parent == data.root for p in paths)
    assert len(set(paths)) == len(paths)
    assert data.database_url("metrics") == f"sqlite:///{tmp_path / 'd' / 'metrics.db'}"
    assert not data.root.exists()


def test_default_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "server-manager"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "server-manager"


def test_ensure_creates_a_private_directory(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "a" / "b")
    data.ensure()
    assert mode(data.root) == 0o700


def test_first_start_files_are_0600(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "d")
    old = os.umask(0)  # a permissive umask must not widen the key files
    try:
        assert initialize(data) is True
    finally:
        os.umask(old)
    for path in data.key_files:
        assert mode(path) == 0o600, path
    assert initialize(data) is False


def test_write_private_is_0600_even_over_a_wider_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private(path, b"new")
    assert path.read_bytes() == b"new"
    assert mode(path) == 0o600


def test_write_private_is_0600_even_over_a_stale_temporary_file(tmp_path: Path) -> None:
    # A crash may leave a temporary file behind with any mode; it must not leak into the result.
    path = tmp_path / "secret"
    for leftover in (tmp_path / "secret.tmp",):
        leftover.write_bytes(b"junk")
        leftover.chmod(0o666)
    write_private(path, b"new")
    assert mode(path) == 0o600
    assert path.read_bytes() == b"new"


def test_write_private_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_private(path, b"x" * 100_000)
    write_private(path, b"y")
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_write_private_replaces_atomically(tmp_path: Path) -> None:
    """Readers see the old or the new content whole, never a mix or an empty file."""
    path = tmp_path / "keys"
    contents = [bytes([65 + i]) * 2_000_000 for i in range(2)]
    write_private(path, contents[0])
    stop = threading.Event()
    seen: set[bytes] = set()
    bad: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            data = path.read_bytes()
            if data in contents:
                seen.add(data[:1])
            else:
                bad.append(len(data))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            write_private(path, contents[i % 2])
    finally:
        stop.set()
        thread.join()
    assert bad == []
    assert seen  # the reader did read


def test_write_private_failure_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    write_private(path, b"old")
    with pytest.raises(TypeError):
        write_private(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]

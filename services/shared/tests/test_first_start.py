"""First start: every piece of key material, once."""

from __future__ import annotations

from pathlib import Path

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize


def test_first_start_creates_everything_once(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "nested" / "data")
    assert initialize(data) is True
    assert all(path.is_file() for path in data.key_files)
    contents = {path: path.read_bytes() for path in data.key_files}
    assert initialize(data) is False
    assert {path: path.read_bytes() for path in data.key_files} == contents


def test_only_what_is_missing_is_created(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    initialize(data)
    contents = {path: path.read_bytes() for path in data.key_files}
    data.service_secret.unlink()
    data.enrollment_key.unlink()
    assert initialize(data) is True
    for path in data.key_files:
        if path in (data.service_secret, data.enrollment_key):
            assert path.read_bytes() != contents[path]
        else:
            assert path.read_bytes() == contents[path], path


def test_service_secret_is_long_and_random(tmp_path: Path) -> None:
    secrets = set()
    for n in range(3):
        data = DataDir(tmp_path / str(n))
        initialize(data)
        secret = data.service_secret.read_text()
        assert len(secret) >= 43
        secrets.add(secret)
    assert len(secrets) == 3

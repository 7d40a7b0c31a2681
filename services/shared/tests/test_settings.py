"""Settings come from SM_ environment variables; building them creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from sm_shared.settings import CoreSettings


def test_environment_with_sm_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SM_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("SM_REDIS_URL", "redis://127.0.0.1:9/3")
    monkeypatch.setenv("SM_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("DATA_DIR", "/not/this/one")
    settings = CoreSettings()
    assert settings.data_dir == tmp_path / "d"
    assert settings.data.root == tmp_path / "d"
    assert settings.redis_url == "redis://127.0.0.1:9/3"
    assert settings.max_body_bytes == 2048
    assert not (tmp_path / "d").exists()


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for name in ("SM_DATA_DIR", "SM_REDIS_URL", "SM_MAX_BODY_BYTES", "SM_VALIDATE_RESPONSES"):
        monkeypatch.delenv(name, raising=False)
    settings = CoreSettings()
    assert settings.data_dir == tmp_path / "xdg" / "server-manager"
    assert settings.max_body_bytes == 1_048_576
    assert settings.validate_responses is False
    assert not settings.data_dir.exists()


def test_arguments_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SM_REDIS_URL", "redis://from-env/0")
    assert CoreSettings(redis_url="redis://from-flag/0").redis_url == "redis://from-flag/0"

"""Settings every service shares. Each program subclasses; nothing is built at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sm_shared.datadir import DataDir, default_data_dir


class CoreSettings(BaseSettings):
    """``SM_``-prefixed environment variables (flags override them)."""

    model_config = SettingsConfigDict(env_prefix="SM_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    redis_url: str = "redis://127.0.0.1:6379/0"
    max_body_bytes: int = 1_048_576
    # Response validation catches drift between the contract and the code;
    # tests keep it on, production may turn it off for speed.
    validate_responses: bool = False
    # Seconds between agent heartbeats: the registry tells enrolling agents, the
    # gateway tells connecting ones (welcome); presence lives three intervals.
    heartbeat_interval: int = Field(default=5, ge=1, le=3600)

    @property
    def data(self) -> DataDir:
        return DataDir(self.data_dir)

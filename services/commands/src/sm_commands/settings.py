"""Settings of the commands service (``SM_`` environment variables)."""

from __future__ import annotations

from sm_shared.settings import CoreSettings


class CommandsSettings(CoreSettings):
    commands_database_url: str | None = None

    @property
    def database_url(self) -> str:
        return self.commands_database_url or self.data.database_url("commands")

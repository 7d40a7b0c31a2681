"""Server Manager commands service: commands, executions, results, audit."""

from sm_commands.app import create_app
from sm_commands.settings import CommandsSettings

__all__ = ["CommandsSettings", "create_app"]

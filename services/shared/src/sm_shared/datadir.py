"""The files of a data directory.

One directory holds everything a core installation keeps: key material
(mode 0600), one SQLite file per service, the private Redis's files.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


def default_data_dir() -> Path:
    """The per-user default: ``$XDG_DATA_HOME/server-manager`` (``~/.local/share/...``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "server-manager"


@dataclass(frozen=True)
class DataDir:
    """Paths inside one data directory; nothing is created until asked."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca-key.pem"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.root / "server-key.pem"

    @property
    def token_keys(self) -> Path:
        """The JWT signing keys (a private JWKS; the newest signs)."""
        return self.root / "token-keys.json"

    @property
    def command_key(self) -> Path:
        """The Ed25519 command-signing private key (PEM)."""
        return self.root / "command-key.pem"

    @property
    def enrollment_key(self) -> Path:
        return self.root / "enrollment.key"

    @property
    def secret_key(self) -> Path:
        return self.root / "secret.key"

    @property
    def service_secret(self) -> Path:
        """The client secret the services use to get service tokens from the registry."""
        return self.root / "service-client.secret"

    def database(self, service: str) -> Path:
        return self.root / f"{service}.db"

    def database_url(self, service: str) -> str:
        return f"sqlite:///{self.database(service)}"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def key_files(self) -> tuple[Path, ...]:
        """Every file of key material (what a backup must carry besides the databases)."""
        return (
            self.ca_cert,
            self.ca_key,
            self.server_cert,
            self.server_key,
            self.token_keys,
            self.command_key,
            self.enrollment_key,
            self.secret_key,
            self.service_secret,
        )

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only (0600).

    The bytes go to a fresh temporary file in the same directory (created 0600
    whatever the umask, with a unique name so a leftover from a crash cannot
    lend it its mode), are flushed to disk, then renamed over ``path``: readers
    see the old content or the new, never a part. A failure leaves ``path`` as
    it was and removes the temporary file.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"write_private needs bytes, not {type(data).__name__}")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

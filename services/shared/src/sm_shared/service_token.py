"""A service token: client credentials ``sm-services`` at the registry (gateway, commands).

The token is cached and fetched again before it expires (or when the
registry rejects it); one fetch serves every waiting caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx

TOKEN_PATH: Final = "/api/v1/oauth/token"  # noqa: S105 (a URL path)
SERVICE_CLIENT_ID: Final = "sm-services"
# Fetch a new token when less than this share of its lifetime remains.
REFRESH_SHARE: Final = 0.2
# A token the registry rejected is replaced at most this often, so a flood of
# bad node credentials cannot turn into a flood of token requests.
MIN_FORCED_REFRESH: Final = 30.0


class RegistryUnavailable(Exception):
    """The registry could not be reached or did not answer as its contract says."""


class ServiceToken:
    def __init__(
        self,
        http: httpx.AsyncClient,
        secret_file: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._secret_file = secret_file
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._fetched_at = float("-inf")

    async def get(self) -> str:
        """A valid service token, fetched when there is none or it is about to expire."""
        token = self._token
        if token is not None and self._clock() < self._refresh_at:
            return token
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                await self._fetch()
            assert self._token is not None
            return self._token

    def rejected(self, token: str) -> bool:
        """The registry rejected ``token``: drop it if it is old enough to be the cause.

        Returns True when a retry with a fresh token is worth it.
        """
        if token != self._token or self._clock() - self._fetched_at < MIN_FORCED_REFRESH:
            return False
        self._token = None
        return True

    async def send(
        self, http: httpx.AsyncClient, method: str, url: str, **options: Any
    ) -> httpx.Response:
        """``method url`` on ``http`` with the service token; sent once more with a fresh
        token when the registry rejects one that may be stale (``rejected``)."""
        while True:
            token = await self.get()
            response = await http.request(
                method, url, headers={"Authorization": f"Bearer {token}"}, **options
            )
            if response.status_code != 401 or not self.rejected(token):
                return response

    async def _fetch(self) -> None:
        try:
            secret = self._secret_file.read_text().strip()
        except OSError as exc:
            raise RegistryUnavailable(f"cannot read {self._secret_file}: {exc.strerror}") from exc
        try:
            response = await self._http.post(
                TOKEN_PATH,
                data={
                    "grant_type": "client_credentials",
                    "client_id": SERVICE_CLIENT_ID,
                    "client_secret": secret,
                },
            )
        except httpx.HTTPError as exc:
            raise RegistryUnavailable(f"token request failed: {exc!r}") from exc
        if response.status_code != 200:
            raise RegistryUnavailable(
                f"token request refused: HTTP {response.status_code} {response.text[:200]}"
            )
        try:
            body = response.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryUnavailable("the token endpoint answered an unusable body") from exc
        now = self._clock()
        self._token = token
        self._fetched_at = now
        self._refresh_at = now + lifetime * (1 - REFRESH_SHARE)

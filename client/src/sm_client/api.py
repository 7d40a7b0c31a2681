"""A typed async client of the core's HTTP API (so far: access tokens).

Errors come back as :class:`ApiError`, whether the core answered a problem
document (RFC 9457) or, from the token endpoint, an RFC 6749 error.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx

from sm_client.trust import bootstrap, core_origin, parse_secret_key

TOKEN_PATH: Final = "/api/v1/oauth/token"  # noqa: S105 (a URL path)
ADMIN_CLIENT_ID: Final = "sm-admin"
USER_CLIENT_ID: Final = "sm-client"
TIMEOUT: Final = 15.0


class ApiError(Exception):
    """The core refused a request: ``status``, a short ``code`` and a readable ``detail``."""

    def __init__(self, status: int, code: str, detail: str, retry_after: int | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}".rstrip(": "))
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        retry = response.headers.get("Retry-After")
        retry_after = int(retry) if retry is not None and retry.isdigit() else None
        if isinstance(body, dict) and "error" in body:  # RFC 6749
            return cls(
                response.status_code,
                str(body["error"]),
                str(body.get("error_description", "")),
                retry_after,
            )
        if isinstance(body, dict) and "title" in body:  # problem+json
            return cls(
                response.status_code,
                str(body["title"]),
                str(body.get("detail", "")),
                retry_after,
            )
        return cls(response.status_code, response.reason_phrase, response.text[:200], retry_after)


@dataclass(frozen=True)
class AccessToken:
    token: str
    scopes: frozenset[str]
    expires_at: float  # Unix time

    def expires_within(self, seconds: float) -> bool:
        return time.time() + seconds >= self.expires_at

    def header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class CoreApi:
    """The core at ``origin``, verified with ``verify`` (see ``sm_client.trust``)."""

    def __init__(self, origin: str, verify: ssl.SSLContext, *, timeout: float = TIMEOUT) -> None:
        self.origin = origin
        self._http = httpx.AsyncClient(
            base_url=origin, verify=verify, timeout=timeout, trust_env=False
        )

    @classmethod
    async def bootstrap(cls, server: str, secret_key: str, ca_file: Path) -> CoreApi:
        """Pin the core's CA with the secret key's fingerprint, then talk to it verified."""
        key = parse_secret_key(secret_key)
        return cls(core_origin(server), await bootstrap(server, key, ca_file))

    async def __aenter__(self) -> CoreApi:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def token_from_secret_key(self, secret_key: str) -> AccessToken:
        """Exchange the secret key for an admin access token."""
        return await self._token(
            {
                "grant_type": "client_credentials",
                "client_id": ADMIN_CLIENT_ID,
                "client_secret": parse_secret_key(secret_key).text,
            }
        )

    async def token_from_password(
        self, username: str, password: str, scopes: list[str] | None = None
    ) -> AccessToken:
        """A user's access token (the scopes of the user's role, or fewer)."""
        form = {
            "grant_type": "password",
            "client_id": USER_CLIENT_ID,
            "username": username,
            "password": password,
        }
        if scopes:
            form["scope"] = " ".join(scopes)
        return await self._token(form)

    async def _token(self, form: dict[str, str]) -> AccessToken:
        try:
            response = await self._http.post(TOKEN_PATH, data=form)
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self.origin}: {exc}") from exc
        if response.status_code != 200:
            raise ApiError.from_response(response)
        body: dict[str, Any] = response.json()
        return AccessToken(
            token=str(body["access_token"]),
            scopes=frozenset(str(body.get("scope", "")).split()),
            expires_at=time.time() + float(body.get("expires_in", 0)),
        )

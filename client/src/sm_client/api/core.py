"""The transport of the typed async API client: trust, access tokens, requests.

Errors come back as :class:`ApiError`, whether the core answered a problem
document (RFC 9457) or, from the token endpoint, an RFC 6749 error, or could
not be reached at all (status 0, code ``unreachable``). The area modules
(``sm_client.api.fleet``, ``.metrics``, ``.commands``, ``.admin``) call
:meth:`CoreApi.call`; nothing here imports Flet.

A caller cancelled mid-request (a screen left, a view-model stopped) does not
cancel the request itself: it finishes in the background and its connection
goes back to the pool. httpcore 1.0 leaks the socket of a request cancelled
during the TLS handshake (its ``start_tls`` closes the stream on ``Exception``
only), and a client cancels reads all the time. :meth:`CoreApi.aclose` waits
for those requests before closing the pool.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import httpx

from sm_client.trust import bootstrap, core_origin, parse_secret_key

TOKEN_PATH: Final = "/api/v1/oauth/token"  # noqa: S105 (a URL path)
ADMIN_CLIENT_ID: Final = "sm-admin"
USER_CLIENT_ID: Final = "sm-client"
TIMEOUT: Final = 15.0
# A token is renewed this long before it expires (the core issues 15-minute tokens).
RENEW_BEFORE: Final = 60.0
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class ApiError(Exception):
    """The core refused a request: ``status``, a short ``code`` and a readable ``detail``."""

    def __init__(self, status: int, code: str, detail: str, retry_after: int | None = None) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}".rstrip(": "))
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    @property
    def title(self) -> str:
        """What a screen shows as the error's heading."""
        return self.code

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


@dataclass(frozen=True)
class SecretKeyLogin:
    secret_key: str

    def __repr__(self) -> str:  # never print the secret
        return "SecretKeyLogin(…)"


@dataclass(frozen=True)
class PasswordLogin:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"PasswordLogin({self.username!r}, …)"


Login = SecretKeyLogin | PasswordLogin


class CoreApi:
    """The core at ``origin``, verified with ``verify`` (see ``sm_client.trust``).

    After :meth:`sign_in` it keeps the login in memory (never on disk) so it
    can buy a new access token before the current one expires; :meth:`call`
    does that transparently.
    """

    def __init__(self, origin: str, verify: ssl.SSLContext, *, timeout: float = TIMEOUT) -> None:
        self.origin = origin
        self.verify = verify
        self._http = httpx.AsyncClient(
            base_url=origin, verify=verify, timeout=timeout, trust_env=False
        )
        self._login: Login | None = None
        self._token: AccessToken | None = None
        self._requests: set[asyncio.Task[httpx.Response]] = set()

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
        """Close the connections, once the requests whose callers gave up have ended."""
        pending = list(self._requests)
        if pending:
            _, late = await asyncio.wait(pending, timeout=TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``httpx.AsyncClient.request``, carried on to its end if the caller is cancelled."""
        task = asyncio.get_running_loop().create_task(self._http.request(method, path, **kwargs))
        self._requests.add(task)
        task.add_done_callback(self._requests.discard)  # shield takes its outcome
        return await asyncio.shield(task)

    # --- signing in -------------------------------------------------------------

    async def sign_in(self, login: Login) -> AccessToken:
        """Exchange ``login`` for an access token and keep both for later calls."""
        if isinstance(login, SecretKeyLogin):
            token = await self.token_from_secret_key(login.secret_key)
        else:
            token = await self.token_from_password(login.username, login.password)
        self._login, self._token = login, token
        return token

    @property
    def signed_in(self) -> bool:
        return self._token is not None

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes of the current token (empty before signing in)."""
        return self._token.scopes if self._token is not None else frozenset()

    @property
    def username(self) -> str | None:
        """The signed-in user's name; None for the secret key (the built-in admin client)."""
        return self._login.username if isinstance(self._login, PasswordLogin) else None

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    async def access_token(self) -> AccessToken:
        """The current token, renewed first when it expires within :data:`RENEW_BEFORE`."""
        if self._login is None or self._token is None:
            raise ApiError(401, "not signed in", "sign in before calling the core")
        if self._token.expires_within(RENEW_BEFORE):
            await self.sign_in(self._login)
        assert self._token is not None
        return self._token

    # --- calls --------------------------------------------------------------------

    async def call(
        self,
        method: Method,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
    ) -> Any:
        """One authenticated request; the decoded JSON body (None for 204).

        ``params`` values that are None are left out; lists repeat the parameter.
        A status outside ``expect`` raises :class:`ApiError` from the problem
        document; a transport failure raises ``ApiError(0, "unreachable", ...)``.
        """
        token = await self.access_token()
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._request(
                method, path, params=query, json=json, headers=token.header()
            )
        except httpx.HTTPError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self.origin}: {exc}") from exc
        if response.status_code not in expect:
            raise ApiError.from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    async def token_from_secret_key(self, secret_key: str) -> AccessToken:
        """Exchange the secret key for an admin access token."""
        return await self._exchange(
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
        return await self._exchange(form)

    async def _exchange(self, form: dict[str, str]) -> AccessToken:
        try:
            response = await self._request("POST", TOKEN_PATH, data=form)
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

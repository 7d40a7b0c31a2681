"""The OAuth 2.0 token endpoint: Authlib's framework-neutral server behind a thin adapter.

Authlib has no ASGI integration, so this module supplies what its
``AuthorizationServer`` leaves to frameworks: the request adapter
(``TokenHttpRequest`` → an ``OAuth2Request``), the response adapter
(``TokenHttpResponse``), client lookup and the token generator. Tokens are
RFC 9068 JWTs signed by ``sm_shared.tokens.issue_access_token`` (the only
issuing path), so every service verifies them with ``TokenVerifier``.

Clients (RFC 6749 section 2):

* ``sm-admin`` — confidential, client credentials; its secret is the
  installation's **secret key** (``sms1…``); the admin role's scopes.
* ``sm-services`` — confidential, client credentials; its secret is the data
  directory's ``service-client.secret``; the services' scopes (incl. ``service``).
* admin-created service clients (``clients``) — client credentials; their role's scopes.
* ``sm-client`` — public (no secret), password grant for users; the user's role's scopes.

The enrollment key is none of these secrets: it never obtains a token.
Failed attempts back off per client address, client id and user name
(``ratelimit``); while one of them must wait the answer is 429 ``slow_down``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from authlib.oauth2.rfc6749 import AuthorizationServer, OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    InsecureTransportError,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import (
    ClientCredentialsGrant,
    ResourceOwnerPasswordCredentialsGrant,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from sqlalchemy import Engine

from sm_registry import clients, users
from sm_registry.context import RegistryContext
from sm_registry.ratelimit import Backoff, client_subject, user_subject
from sm_shared.access_keys import KeyKind, MalformedKey, load_key
from sm_shared.datadir import DataDir
from sm_shared.scopes import (
    AUDIT_READ,
    BUILTIN_ROLES,
    COMMANDS_READ,
    METRICS_READ,
    NODES_READ,
    NODES_WRITE,
    SERVICE,
    parse_scope,
)
from sm_shared.tokens import issue_access_token

TOKEN_PATH: Final = "/api/v1/oauth/token"  # noqa: S105 (a path)
ADMIN_CLIENT_ID: Final = "sm-admin"
SERVICES_CLIENT_ID: Final = "sm-services"
USER_CLIENT_ID: Final = "sm-client"
SERVICES_SCOPES: Final = frozenset(
    {SERVICE, NODES_READ, NODES_WRITE, METRICS_READ, COMMANDS_READ, AUDIT_READ}
)
CLIENT_CREDENTIALS: Final = "client_credentials"
PASSWORD: Final = "password"  # noqa: S105 (a grant type's name)
# RFC 6749 errors that mean "wrong credentials": they count towards the backoff.
CREDENTIAL_ERRORS: Final = frozenset({"invalid_client", "invalid_grant"})
SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
JSON_HEADERS: Final = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


@dataclass(frozen=True)
class OAuthClient:
    """A client as Authlib's ``ClientMixin`` sees it.

    ``secret_check`` is None for the public client (no secret: auth method ``none``).
    """

    client_id: str
    grant_type: str
    scopes: frozenset[str]
    secret_check: Callable[[str], bool] | None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(sorted(parse_scope(scope or "") & self.scopes))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False  # no authorization endpoint: nothing ever redirects

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_check is not None and self.secret_check(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint != "token":
            return False
        if self.secret_check is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == self.grant_type


@dataclass(frozen=True)
class TokenHttpRequest:
    """What the adapter needs of an HTTP request to the token endpoint."""

    uri: str
    headers: Mapping[str, str]
    form: dict[str, str]


@dataclass(frozen=True)
class TokenHttpResponse:
    """An answer of the token endpoint: a token, or an RFC 6749 error."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))

    @property
    def error(self) -> str | None:
        error = self.body.get("error")
        return None if error is None else str(error)


def error_response(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> TokenHttpResponse:
    """An RFC 6749 section 5.2 error answer."""
    return TokenHttpResponse(
        status,
        {"error": error, "error_description": description},
        {**JSON_HEADERS, **(headers or {})},
    )


class _FormRequest(OAuth2Request):  # type: ignore[misc]
    """Authlib's request over an already parsed form (its ``payload`` system)."""

    def __init__(self, request: TokenHttpRequest) -> None:
        super().__init__("POST", request.uri, headers=request.headers)
        self.payload = BasicOAuth2Payload(request.form)
        self._form = request.form

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


def _check_requested_scope(requested: str | None, allowed: frozenset[str]) -> None:
    # A requested scope narrows the token; asking for more than is held is an error.
    extra = parse_scope(requested or "") - allowed
    if not extra:
        return
    # RFC 6749 section 3.3 scope-token characters; anything else is not echoed back
    # (Authlib refuses error descriptions with other characters).
    if any(not SCOPE_TOKEN.fullmatch(token) for token in extra):
        raise InvalidScopeError("The scope is malformed.")
    raise InvalidScopeError(f"Not granted to this client or user: {' '.join(sorted(extra))}.")


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012 (Authlib's interface)

    def validate_requested_scope(self) -> None:
        _check_requested_scope(self.request.payload.scope, self.request.client.scopes)


class _Password(ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012 (Authlib's interface)

    def validate_token_request(self) -> None:
        # Authlib's version answers wrong credentials with invalid_request;
        # RFC 6749 section 5.2 says invalid_grant.
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'."
            )
        username = self.request.form.get("username")
        password = self.request.form.get("password")
        if not username or not password:
            raise InvalidRequestError("Missing 'username' or 'password'.")
        self.request.client = client
        self.request.user = self.authenticate_user(username, password)
        self.validate_requested_scope()

    def authenticate_user(self, username: str, password: str) -> users.SignedInUser:
        server = self.server
        assert isinstance(server, TokenServer)
        try:
            return users.authenticate(server.engine, username, password)
        except users.WrongCredentials:
            raise InvalidGrantError("The user name or password is wrong.") from None
        except users.UserDisabled:
            raise InvalidGrantError("The user is disabled.") from None

    def validate_requested_scope(self) -> None:
        _check_requested_scope(self.request.payload.scope, self.request.user.scopes)


class TokenServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's authorization server, token endpoint only, over this registry's clients.

    Blocking (database, argon2): run ``create_token_response`` in a worker thread.
    """

    def __init__(self, engine: Engine, data: DataDir, ttl: int) -> None:
        super().__init__()
        self.engine = engine
        self.data = data
        self.ttl = ttl
        self.register_grant(_ClientCredentials)
        self.register_grant(_Password)
        self.register_token_generator("default", self._generate_token)

    def query_client(self, client_id: str) -> OAuthClient | None:
        if client_id == ADMIN_CLIENT_ID:
            return OAuthClient(
                client_id,
                CLIENT_CREDENTIALS,
                frozenset(BUILTIN_ROLES["admin"]),
                self._is_secret_key,
            )
        if client_id == SERVICES_CLIENT_ID:
            return OAuthClient(
                client_id, CLIENT_CREDENTIALS, SERVICES_SCOPES, self._is_services_secret
            )
        if client_id == USER_CLIENT_ID:
            # Users' scopes come from their roles; the client itself limits nothing.
            return OAuthClient(client_id, PASSWORD, frozenset(BUILTIN_ROLES["admin"]), None)
        found = clients.find_client(self.engine, client_id)
        if found is None:
            return None
        row, scopes = found
        return OAuthClient(
            client_id,
            CLIENT_CREDENTIALS,
            scopes,
            lambda secret: clients.secret_matches(row, secret),
        )

    def _is_secret_key(self, secret: str) -> bool:
        # Read on every request: `smctl keys rotate` takes effect at once.
        try:
            return load_key(self.data, KeyKind.SECRET).matches(secret)
        except (OSError, MalformedKey):
            return False

    def _is_services_secret(self, secret: str) -> bool:
        try:
            expected = self.data.service_secret.read_bytes().strip()
        except OSError:
            return False
        return hmac.compare_digest(expected, secret.strip().encode())

    def _generate_token(
        self,
        grant_type: str,
        client: OAuthClient,
        user: users.SignedInUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        # No refresh tokens: clients hold credentials and ask again.
        held = user.scopes if user is not None else client.scopes
        granted = parse_scope(scope or "") or held
        ttl = expires_in or self.ttl
        token = issue_access_token(
            self.data,
            subject=user.username if user is not None else client.client_id,
            client_id=client.client_id,
            scopes=granted,
            ttl=ttl,
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": " ".join(sorted(granted)),
        }

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        # Self-contained JWTs: nothing to store; they expire on their own.
        return None

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: TokenHttpRequest) -> OAuth2Request:
        return _FormRequest(request)

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> TokenHttpResponse:
        return TokenHttpResponse(status, dict(body), {**JSON_HEADERS, **dict(headers)})

    def handle_error_response(self, request: OAuth2Request | None, error: OAuth2Error) -> Any:
        if isinstance(error, InvalidClientError):
            # Authlib's text lists the methods it tried; say what went wrong instead.
            error.description = "Unknown client, wrong client secret, or no client credentials."
            # One status for every failed client authentication (Authlib varies it by method).
            error.status_code = 401
        return super().handle_error_response(request, error)

    def respond(self, request: TokenHttpRequest) -> TokenHttpResponse:
        """The answer to one token request (blocking)."""
        try:
            response = self.create_token_response(request)
        except InsecureTransportError:
            return error_response(400, "invalid_request", "Tokens are only issued over HTTPS.")
        except OAuth2Error as error:
            response = self.handle_error_response(None, error)
        assert isinstance(response, TokenHttpResponse)
        return response


class MalformedBasicAuth(ValueError):
    """The Authorization header is not valid HTTP Basic credentials."""


def basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from an HTTP Basic Authorization header, if any."""
    header = headers.get("authorization")
    if header is None:
        return None
    kind, _, value = header.partition(" ")
    if kind.lower() != "basic":
        return None  # not a client authentication (e.g. a stray bearer token): ignored
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise MalformedBasicAuth("the Authorization header is not base64 of UTF-8") from exc
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise MalformedBasicAuth("the Authorization header has no ':'")
    return client_id, secret


def _identity_subjects(form: Mapping[str, str], basic_client: str | None) -> list[str]:
    subjects: list[str] = []
    client_id = basic_client or form.get("client_id")
    # The public client is shared by every user: its failures are counted per
    # user name instead, or one guesser would slow every user's sign-in.
    if client_id and client_id != USER_CLIENT_ID:
        subjects.append(client_subject(client_id))
    username = form.get("username")
    if form.get("grant_type") == PASSWORD and username:
        subjects.append(user_subject(username))
    return subjects


async def token_response(
    ctx: RegistryContext, request: TokenHttpRequest, address_subject: str
) -> TokenHttpResponse:
    """Answer a token request, with backoff on failed attempts.

    ``address_subject`` names the caller's address (``ratelimit.address_subject``).
    """
    try:
        basic = basic_credentials(request.headers)
    except MalformedBasicAuth as exc:
        return error_response(400, "invalid_request", f"{str(exc).capitalize()}.")
    if basic is not None and "client_secret" in request.form:
        return error_response(
            400, "invalid_request", "Use one client authentication method, not two."
        )
    if not request.form.get("grant_type"):
        return error_response(400, "invalid_request", "Missing 'grant_type'.")

    identities = _identity_subjects(request.form, basic[0] if basic else None)
    subjects = [address_subject, *identities]
    backoff = Backoff(ctx.redis, "token")
    wait = await backoff.retry_after(subjects)
    if wait:
        return error_response(
            429,
            "slow_down",
            f"Too many failed attempts; retry in {wait} s.",
            {"Retry-After": str(wait)},
        )

    server = TokenServer(ctx.engine, ctx.data, ctx.settings.access_token_ttl)
    response = await asyncio.to_thread(server.respond, request)
    if response.error in CREDENTIAL_ERRORS:
        await backoff.fail(subjects)
    elif response.status == 200:
        # Only what this success proves: that client / user knew its secret.
        await backoff.succeed(identities)
    return response

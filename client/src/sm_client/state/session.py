"""Signing in to a core: the connect flows, remembered servers, the signed-in session.

Two ways in:

- the **secret key** (``sms1.<fingerprint>.<secret>``): the fingerprint in it
  names the core's CA, so the CA fetched from ``/ca.pem`` is checked against it
  before anything is sent (a different one is a *certificate mismatch*);
- a **user name and password**: on first contact the core's CA fingerprint is
  shown for the user to compare with the one ``up`` printed (:attr:`Phase.CONFIRM`);
  once confirmed, that CA is pinned and later connections verify with it.

Servers are remembered in the client's storage with their pinned CA (PEM) and
fingerprint; credentials only when the user ticks "remember", otherwise they
live in this session's memory alone. Each failure has its own
:class:`Failure` kind so the connect screen says exactly what went wrong.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Final, Literal

from sm_client.api import ApiError, CoreApi, PasswordLogin, SecretKeyLogin
from sm_client.live import LiveEvents
from sm_client.state.observable import Observable
from sm_client.state.preferences import Storage
from sm_client.trust import (
    MalformedKey,
    TrustError,
    core_origin,
    fetch_ca_unverified,
    parse_secret_key,
    pinned_certificate,
)

SERVERS_KEY: Final = "sm.servers"
# Without it the client shows nothing (every screen lists nodes first).
REQUIRED_SCOPE: Final = "nodes:read"
MAX_REMEMBERED: Final = 10
Method = Literal["key", "password"]


class Phase(Enum):
    SIGNED_OUT = "signed_out"
    CONNECTING = "connecting"
    CONFIRM = "confirm"  # a password login waits for the user to trust the fingerprint
    SIGNED_IN = "signed_in"


class Failure(Enum):
    """Why connecting failed; the connect screen has a message for each."""

    INVALID_SERVER = "invalid_server"
    UNREACHABLE = "unreachable"
    MALFORMED_KEY = "malformed_key"
    WRONG_KEY = "wrong_key"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (a failure's name)
    CERTIFICATE_MISMATCH = "certificate_mismatch"
    INSUFFICIENT_ROLE = "insufficient_role"
    REFUSED = "refused"  # anything else the core answered (rate limited, …)


@dataclass
class ConnectFailure:
    kind: Failure
    detail: str = ""


@dataclass
class KnownServer:
    """A server this client connected to: its pinned CA, and the login if remembered."""

    origin: str
    fingerprint: str  # AB:CD:… (SHA-256 of the CA certificate, as ``up`` prints it)
    ca_pem: str
    method: Method = "key"
    username: str = ""
    secret: str = ""  # the secret key or password, only when the user chose to remember it
    used_at: float = 0.0

    @property
    def remembers_login(self) -> bool:
        return bool(self.secret)

    @classmethod
    def from_json(cls, value: object) -> KnownServer | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                origin=str(value["origin"]),
                fingerprint=str(value["fingerprint"]),
                ca_pem=str(value["ca_pem"]),
                method="password" if value.get("method") == "password" else "key",
                username=str(value.get("username", "")),
                secret=str(value.get("secret", "")),
                used_at=float(value.get("used_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class PendingTrust:
    """A first password login, waiting for the user to confirm the core's fingerprint."""

    origin: str
    fingerprint: str
    ca_pem: str
    login: PasswordLogin
    remember: bool = field(default=False)


def fingerprint_of(pem: str) -> str:
    """``AB:CD:…``: the SHA-256 of the (first) certificate in ``pem``, DER-encoded."""
    der = ssl.PEM_cert_to_DER_cert(pem)
    return ":".join(f"{byte:02X}" for byte in hashlib.sha256(der).digest())


def first_certificate(pem: bytes) -> str:
    """The first certificate of a ``/ca.pem`` body; TrustError when there is none."""
    text = pem.decode("ascii", "replace")
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, begin)
    if begin < 0 or end < 0:
        raise TrustError("the core's /ca.pem holds no certificate")
    certificate = text[begin : end + len(end_marker)] + "\n"
    try:
        fingerprint_of(certificate)
    except ValueError as exc:
        raise TrustError(f"the core's /ca.pem holds a damaged certificate: {exc}") from None
    return certificate


def context_for(ca_pem: str) -> ssl.SSLContext:
    """A client context trusting only ``ca_pem``, host names checked."""
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def failure_of(error: ApiError, method: Method) -> ConnectFailure:
    """What a refused or failed token request means to the person signing in."""
    if error.status == 0:
        if "CERTIFICATE_VERIFY_FAILED" in error.detail or "certificate verify" in error.detail:
            return ConnectFailure(Failure.CERTIFICATE_MISMATCH, error.detail)
        return ConnectFailure(Failure.UNREACHABLE, error.detail)
    if error.code == "invalid_client":
        return ConnectFailure(Failure.WRONG_KEY, error.detail)
    if error.code == "invalid_grant":
        return ConnectFailure(Failure.WRONG_PASSWORD, error.detail)
    if error.code in ("invalid_scope", "access_denied") or error.status == 403:
        return ConnectFailure(Failure.INSUFFICIENT_ROLE, error.detail)
    return ConnectFailure(Failure.REFUSED, f"{error.title}: {error.detail}".strip(": "))


FeedFactory = Callable[[CoreApi], LiveEvents]


class Session(Observable):
    """The connect flows and, once signed in, the session's API client and live feed."""

    def __init__(
        self,
        storage: Storage,
        default_server: str = "",
        *,
        feed_factory: FeedFactory = LiveEvents,
    ) -> None:
        super().__init__()
        self.storage = storage
        self.default_server = default_server
        self.feed_factory = feed_factory
        self.phase = Phase.SIGNED_OUT
        self.failure: ConnectFailure | None = None
        self.servers: list[KnownServer] = []
        self.pending: PendingTrust | None = None
        self.server: KnownServer | None = None  # the one signed in to
        self.api: CoreApi | None = None
        self.feed: LiveEvents | None = None
        # CAs the user confirmed in this session whose sign-in then failed (a mistyped
        # password): trusted again without asking, pinned once a sign-in succeeds.
        self._confirmed: dict[str, PendingTrust] = {}

    # --- what screens show ------------------------------------------------------------

    @property
    def identity(self) -> str:
        """Who is signed in: the user name, or "" for the secret key (the admin client)."""
        return self.api.username or "" if self.api is not None else ""

    def suggested_server(self) -> str:
        """What the connect screen's server field starts with."""
        if self.default_server:
            return self.default_server
        return self.servers[0].origin if self.servers else ""

    def known(self, server: str) -> KnownServer | None:
        try:
            origin = core_origin(server)
        except TrustError:
            return None
        return next((s for s in self.servers if s.origin == origin), None)

    def auto_login(self) -> KnownServer | None:
        """The server to connect to without asking: the default one if it remembers a
        login, else the most recently used one that does."""
        preferred = self.known(self.default_server) if self.default_server else None
        if preferred is not None and preferred.remembers_login:
            return preferred
        return next((s for s in self.servers if s.remembers_login), None)

    # --- storage ----------------------------------------------------------------------

    async def load(self) -> None:
        raw = await self.storage.get(SERVERS_KEY)
        try:
            values = json.loads(raw) if raw else []
        except ValueError:
            values = []
        servers = [KnownServer.from_json(v) for v in values if isinstance(values, list)]
        self.servers = sorted(
            (s for s in servers if s is not None), key=lambda s: s.used_at, reverse=True
        )
        self.changed()

    async def _save(self) -> None:
        self.servers.sort(key=lambda s: s.used_at, reverse=True)
        del self.servers[MAX_REMEMBERED:]
        await self.storage.set(SERVERS_KEY, json.dumps([asdict(s) for s in self.servers]))

    async def _remember(self, entry: KnownServer) -> None:
        self.servers = [s for s in self.servers if s.origin != entry.origin]
        self.servers.insert(0, entry)
        await self._save()

    async def forget(self, origin: str) -> None:
        """Drop a remembered server, its pinned CA and its remembered login."""
        self._confirmed.pop(origin, None)
        self.servers = [s for s in self.servers if s.origin != origin]
        await self._save()
        self.changed()

    # --- connecting -------------------------------------------------------------------

    def _begin(self) -> None:
        self.phase, self.failure, self.pending = Phase.CONNECTING, None, None
        self.changed()

    def _fail(self, kind: Failure, detail: str = "") -> None:
        self.phase, self.failure = Phase.SIGNED_OUT, ConnectFailure(kind, detail)
        self.changed()

    async def connect_key(self, server: str, secret_key: str, *, remember: bool = False) -> bool:
        """Sign in with the secret key; whether it worked (else :attr:`failure` says why)."""
        self._begin()
        try:
            origin = core_origin(server.strip())
        except TrustError as exc:
            self._fail(Failure.INVALID_SERVER, str(exc))
            return False
        try:
            key = parse_secret_key(secret_key)
        except MalformedKey as exc:
            self._fail(Failure.MALFORMED_KEY, str(exc))
            return False
        fingerprint = ":".join(f"{byte:02X}" for byte in key.fingerprint)
        known = self.known(origin)
        if known is not None and known.fingerprint == fingerprint:
            ca_pem = known.ca_pem
        else:
            try:
                body = await fetch_ca_unverified(origin)
            except TrustError as exc:
                self._fail(Failure.UNREACHABLE, str(exc))
                return False
            try:
                ca_pem = pinned_certificate(body, key.fingerprint).decode("ascii")
            except TrustError as exc:
                self._fail(Failure.CERTIFICATE_MISMATCH, str(exc))
                return False
        entry = KnownServer(
            origin,
            fingerprint,
            ca_pem,
            "key",
            secret=key.text if remember else "",
        )
        return await self._sign_in(entry, SecretKeyLogin(key.text))

    async def connect_password(
        self, server: str, username: str, password: str, *, remember: bool = False
    ) -> bool:
        """Sign in with a password. A server seen before is verified with its pinned CA;
        a new one stops at :attr:`Phase.CONFIRM` with its fingerprint in :attr:`pending`
        (then :meth:`trust` or :meth:`cancel`). Whether it signed in."""
        self._begin()
        try:
            origin = core_origin(server.strip())
        except TrustError as exc:
            self._fail(Failure.INVALID_SERVER, str(exc))
            return False
        login = PasswordLogin(username.strip(), password)
        known = self.known(origin)
        confirmed = self._confirmed.get(origin)
        if known is None and confirmed is not None:
            self.pending = PendingTrust(
                origin, confirmed.fingerprint, confirmed.ca_pem, login, remember
            )
            return await self.trust()
        if known is not None:
            entry = KnownServer(
                origin,
                known.fingerprint,
                known.ca_pem,
                "password",
                login.username,
                password if remember else "",
            )
            return await self._sign_in(entry, login)
        try:
            ca_pem = first_certificate(await fetch_ca_unverified(origin))
        except TrustError as exc:
            kind = Failure.UNREACHABLE if "cannot fetch" in str(exc) else Failure.REFUSED
            self._fail(kind, str(exc))
            return False
        self.pending = PendingTrust(origin, fingerprint_of(ca_pem), ca_pem, login, remember)
        self.phase = Phase.CONFIRM
        self.changed()
        return False

    async def trust(self) -> bool:
        """The user confirmed the fingerprint shown: pin that CA and sign in."""
        pending = self.pending
        if pending is None:
            return False
        self._confirmed[pending.origin] = pending
        self._begin()
        entry = KnownServer(
            pending.origin,
            pending.fingerprint,
            pending.ca_pem,
            "password",
            pending.login.username,
            pending.login.password if pending.remember else "",
        )
        return await self._sign_in(entry, pending.login)

    def cancel(self) -> None:
        """The user did not recognise the fingerprint: nothing is pinned."""
        self.pending = None
        self.phase = Phase.SIGNED_OUT
        self.changed()

    async def resume(self, entry: KnownServer) -> bool:
        """Sign in with a remembered login."""
        self._begin()
        login: SecretKeyLogin | PasswordLogin = (
            SecretKeyLogin(entry.secret)
            if entry.method == "key"
            else PasswordLogin(entry.username, entry.secret)
        )
        return await self._sign_in(entry, login)

    async def _sign_in(self, entry: KnownServer, login: SecretKeyLogin | PasswordLogin) -> bool:
        try:
            context = context_for(entry.ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            self._fail(Failure.CERTIFICATE_MISMATCH, f"the pinned CA is unusable: {exc}")
            return False
        api = CoreApi(entry.origin, context)
        try:
            token = await api.sign_in(login)
        except ApiError as exc:
            await api.aclose()
            failure = failure_of(exc, entry.method)
            self._fail(failure.kind, failure.detail)
            return False
        if REQUIRED_SCOPE not in token.scopes:
            await api.aclose()
            granted = " ".join(sorted(token.scopes)) or "none"
            self._fail(Failure.INSUFFICIENT_ROLE, f"needs {REQUIRED_SCOPE}; granted: {granted}")
            return False
        entry.used_at = time.time()
        self._confirmed.pop(entry.origin, None)
        await self._remember(entry)
        self.api, self.server = api, entry
        self.feed = self.feed_factory(api)
        self.feed.start()
        self.phase, self.failure, self.pending = Phase.SIGNED_IN, None, None
        self.changed()
        return True

    async def sign_out(self, *, forget_login: bool = True) -> None:
        """End the session; the remembered login is dropped too unless told otherwise
        (the server and its pinned CA stay). Views learn at once; the socket and the
        HTTP client close after."""
        feed, api, server = self.feed, self.api, self.server
        self.feed = self.api = self.server = None
        self.phase, self.failure, self.pending = Phase.SIGNED_OUT, None, None
        self.changed()
        if feed is not None:
            await feed.close()
        if api is not None:
            await api.aclose()
        if forget_login and server is not None:
            for known in self.servers:
                if known.origin == server.origin:
                    known.secret = ""
            await self._save()
            self.changed()

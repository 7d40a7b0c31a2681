"""The connect flows against the real core: each way in, each failure, pinning, remembering."""

from __future__ import annotations

import base64
import datetime
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sm_client.api import CoreApi
from sm_client.api.admin import AdminApi
from sm_client.i18n import Language, Translator
from sm_client.state.preferences import MemoryStorage, Preferences, Theme
from sm_client.state.session import SERVERS_KEY, Failure, Phase, Session
from sm_ctl.instance import UpProcess, free_port_pair

from .conftest import STRICT, Core

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Core]:
    """The core without the web client (these tests talk to the core, not to the web app)."""
    root = tmp_path_factory.mktemp("core")
    up = UpProcess.start(root / "data", free_port_pair(), "--no-web", env=STRICT)
    try:
        yield Core(up, up.wait_ready(), root)
    finally:
        up.stop()


@pytest.fixture
async def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
async def session(storage: MemoryStorage) -> AsyncIterator[Session]:
    state = Session(storage)
    await state.load()
    try:
        yield state
    finally:
        await state.sign_out(forget_login=False)


@pytest.fixture(scope="module")
def users() -> dict[str, str]:
    return {}


async def user(admin: CoreApi, users: dict[str, str], name: str, role: str) -> str:
    if name not in users:
        accounts = AdminApi(admin)
        if role not in {r["name"] for r in (await accounts.list_roles())["items"]}:
            await accounts.create_role({"name": role, "scopes": ["audit:read"]})
        await accounts.create_user({"username": name, "password": PASSWORD, "role": role})
        users[name] = role
    return name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def other_fingerprint(key: str) -> str:
    """The key with another core's fingerprint (same secret)."""
    kind, _, secret = key.split(".")
    fake = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    return f"{kind}.{fake}.{secret}"


def stored(storage: MemoryStorage) -> list[dict[str, object]]:
    servers: list[dict[str, object]] = json.loads(storage.values[SERVERS_KEY])
    return servers


async def test_secret_key_signs_in_pins_the_ca_and_starts_the_feed(
    core: Core, session: Session, storage: MemoryStorage
) -> None:
    assert await session.connect_key(core.api_url, core.secret_key)
    assert session.phase is Phase.SIGNED_IN
    assert session.failure is None
    assert session.api is not None
    assert session.api.may("admin")
    assert session.identity == ""  # the secret key: the built-in admin client
    assert session.feed is not None
    assert session.server is not None
    assert session.server.fingerprint == core.ready.fingerprint
    (entry,) = stored(storage)
    assert entry["origin"] == core.api_url
    assert entry["fingerprint"] == core.ready.fingerprint
    assert "BEGIN CERTIFICATE" in str(entry["ca_pem"])
    assert entry["secret"] == ""  # not remembered unless asked
    assert session.auto_login() is None
    nodes = await session.api.call("GET", "/api/v1/nodes")
    assert nodes["total"] >= 1


async def test_remembered_key_signs_in_by_itself_and_sign_out_forgets_it(
    core: Core, storage: MemoryStorage
) -> None:
    first = Session(storage)
    assert await first.connect_key(core.api_url, core.secret_key, remember=True)
    assert stored(storage)[0]["secret"] == core.secret_key
    await first.sign_out(forget_login=False)  # the session ends (tab closed)

    again = Session(storage, default_server=core.api_url)
    await again.load()
    known = again.auto_login()
    assert known is not None
    assert known.origin == core.api_url
    assert await again.resume(known)
    assert again.phase is Phase.SIGNED_IN
    await again.sign_out()  # signing out drops the remembered login, not the server
    assert stored(storage)[0]["secret"] == ""
    assert stored(storage)[0]["fingerprint"] == core.ready.fingerprint
    assert again.auto_login() is None


@pytest.mark.parametrize(
    ("server", "key", "kind"),
    [
        ("{api}", "not-a-key", Failure.MALFORMED_KEY),
        ("{api}", "sme1.{enrollment}", Failure.MALFORMED_KEY),
        ("{api}", "{other_fingerprint}", Failure.CERTIFICATE_MISMATCH),
        ("{api}", "{wrong_secret}", Failure.WRONG_KEY),
        ("https://127.0.0.1:{closed}", "{key}", Failure.UNREACHABLE),
        ("http://{api_host}", "{key}", Failure.INVALID_SERVER),
    ],
)
async def test_each_key_failure_has_its_own_kind(
    core: Core, session: Session, server: str, key: str, kind: Failure
) -> None:
    kind_, fingerprint, secret = core.secret_key.split(".")
    values = {
        "api": core.api_url,
        "api_host": core.api_url.removeprefix("https://"),
        "closed": free_port(),
        "key": core.secret_key,
        "enrollment": core.ready.enrollment_key.split(".", 1)[1],
        "other_fingerprint": other_fingerprint(core.secret_key),
        "wrong_secret": f"{kind_}.{fingerprint}.{'A' * len(secret)}",
    }
    assert not await session.connect_key(server.format(**values), key.format(**values))
    assert session.phase is Phase.SIGNED_OUT
    assert session.failure is not None
    assert session.failure.kind is kind, session.failure
    assert session.failure.detail
    assert session.api is None


async def test_password_first_contact_shows_the_fingerprint_then_pins_it(
    core: Core, admin: CoreApi, users: dict[str, str], storage: MemoryStorage
) -> None:
    name = await user(admin, users, "vera", "viewer")
    first = Session(storage)
    assert not await first.connect_password(core.api_url, name, PASSWORD, remember=True)
    assert first.phase is Phase.CONFIRM
    assert first.pending is not None
    assert first.pending.fingerprint == core.ready.fingerprint  # what up printed
    assert SERVERS_KEY not in storage.values  # nothing pinned before the user agrees
    assert await first.trust()
    assert first.phase is Phase.SIGNED_IN
    assert first.identity == name
    assert first.api is not None
    assert first.api.may("nodes:read")
    assert not first.api.may("commands:run")
    (entry,) = stored(storage)
    assert entry["method"] == "password"
    assert entry["username"] == name
    assert entry["secret"] == PASSWORD  # remember was ticked
    await first.sign_out(forget_login=False)

    # Next time the pinned CA is used: no question asked.
    again = Session(storage)
    await again.load()
    assert await again.connect_password(core.api_url, name, PASSWORD)
    assert again.phase is Phase.SIGNED_IN
    assert stored(storage)[0]["secret"] == ""  # not ticked this time: forgotten
    await again.sign_out()


async def test_cancelling_the_fingerprint_pins_nothing(
    core: Core, admin: CoreApi, users: dict[str, str], session: Session, storage: MemoryStorage
) -> None:
    name = await user(admin, users, "vera", "viewer")
    assert not await session.connect_password(core.api_url, name, PASSWORD)
    assert session.phase is Phase.CONFIRM
    session.cancel()
    assert session.phase is Phase.SIGNED_OUT
    assert session.pending is None
    assert SERVERS_KEY not in storage.values


async def test_password_failures(
    core: Core, admin: CoreApi, users: dict[str, str], session: Session
) -> None:
    viewer = await user(admin, users, "vera", "viewer")
    auditor = await user(admin, users, "otto", "audit-only")

    assert not await session.connect_password(core.api_url, viewer, "wrong password")
    assert session.phase is Phase.CONFIRM  # the fingerprint first…
    assert await session.trust() is False
    assert session.failure is not None
    assert session.failure.kind is Failure.WRONG_PASSWORD
    assert session.servers == []  # pinned only once a sign-in succeeds

    # The fingerprint confirmed a moment ago is not asked for again in this session.
    assert not await session.connect_password(core.api_url, auditor, PASSWORD)
    assert session.phase is Phase.SIGNED_OUT
    assert session.failure is not None
    assert session.failure.kind is Failure.INSUFFICIENT_ROLE
    assert "nodes:read" in session.failure.detail

    closed = f"https://127.0.0.1:{free_port()}"
    assert not await session.connect_password(closed, viewer, PASSWORD)
    assert session.failure is not None
    assert session.failure.kind is Failure.UNREACHABLE


async def test_a_changed_certificate_is_a_mismatch(
    core: Core, storage: MemoryStorage, tmp_path: Path
) -> None:
    first = Session(storage)
    assert await first.connect_key(core.api_url, core.secret_key)
    await first.sign_out()
    # Another CA pinned for this server (say the core was reinstalled meanwhile).
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    servers = stored(storage)
    servers[0]["ca_pem"] = cert.public_bytes(serialization.Encoding.PEM).decode()
    servers[0]["method"] = "password"
    storage.values[SERVERS_KEY] = json.dumps(servers)

    again = Session(storage)
    await again.load()
    assert not await again.connect_password(core.api_url, "anyone", PASSWORD)
    assert again.failure is not None
    assert again.failure.kind is Failure.CERTIFICATE_MISMATCH
    # Forgetting the server lets the user pin the core again.
    await again.forget(core.api_url)
    assert not await again.connect_password(core.api_url, "anyone", PASSWORD)
    assert again.phase is Phase.CONFIRM


async def test_preferences_are_kept_in_storage(storage: MemoryStorage) -> None:
    i18n = Translator()
    prefs = Preferences(storage, i18n)
    await prefs.set_theme(Theme.DARK)
    await prefs.set_language(Language.ZH)
    assert i18n.language is Language.ZH

    later = Translator()
    again = Preferences(storage, later)
    await again.load()
    assert again.theme is Theme.DARK
    assert later.language is Language.ZH
    assert later.t("shell.nav.nodes") == "节点"

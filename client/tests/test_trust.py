"""The client's trust bootstrap against the real registry (and an impostor)."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from sm_client.trust import (
    MalformedKey,
    TrustError,
    bootstrap,
    core_origin,
    parse_secret_key,
    pinned_certificate,
)
from sm_shared.access_keys import KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.pki import ca_fingerprint, create_ca, issue_server_cert


@pytest.fixture
def secret_key(data_dir: DataDir) -> str:
    return str(load_key(data_dir, KeyKind.SECRET))


def _serve(cert: bytes, key: bytes, ca_cert: bytes, tmp_path: Path) -> Iterator[str]:
    """A TLS server with ``cert`` that answers every GET with ``ca_cert``."""
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(ca_cert)))
            self.end_headers()
            self.wfile.write(ca_cert)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[str]:
    """A server with a CA of its own, serving that CA at /ca.pem."""
    ca_cert, ca_key = create_ca("Impostor CA")
    cert, key = issue_server_cert(ca_cert, ca_key, ["127.0.0.1"])
    yield from _serve(cert, key, ca_cert, tmp_path)


@pytest.fixture
def misnamed(data_dir: DataDir, tmp_path: Path) -> Iterator[str]:
    """The core's CA, but a certificate for another name than the one dialled."""
    ca_cert = data_dir.ca_cert.read_bytes()
    cert, key = issue_server_cert(ca_cert, data_dir.ca_key.read_bytes(), ["elsewhere.invalid"])
    yield from _serve(cert, key, ca_cert, tmp_path)


def test_parse_secret_key(data_dir: DataDir, secret_key: str) -> None:
    key = parse_secret_key(f" {secret_key}\n")
    assert key.fingerprint == ca_fingerprint(data_dir.ca_cert.read_bytes())
    assert key.text == secret_key
    assert secret_key.split(".")[2] not in repr(key)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a secret key"),
        ("sms1.only-two", "not a secret key"),
        ("sms1." + "A" * 20 + "." + "B" * 43, "not a SHA-256"),
        ("sms1." + "A+" * 22 + "." + "B" * 43, "not base64url"),
        ("sms1." + "A" * 43 + ".short", "truncated"),
    ],
)
def test_malformed_secret_keys(text: str, message: str) -> None:
    with pytest.raises(MalformedKey, match=message):
        parse_secret_key(text)


def test_the_enrollment_key_is_refused_by_name(data_dir: DataDir) -> None:
    with pytest.raises(MalformedKey, match="enrollment key"):
        parse_secret_key(str(load_key(data_dir, KeyKind.ENROLLMENT)))


def test_core_origin() -> None:
    assert core_origin("core:8101") == "https://core:8101"
    with pytest.raises(TrustError):
        core_origin("http://core:8101")


async def test_bootstrap_pins_the_core_ca_and_verifies_with_it(
    registry_origin: str, data_dir: DataDir, secret_key: str, tmp_path: Path
) -> None:
    ca_file = tmp_path / "client" / "ca.pem"
    context = await bootstrap(registry_origin, parse_secret_key(secret_key), ca_file)
    assert ca_file.read_bytes().strip() == data_dir.ca_cert.read_bytes().strip()
    assert ca_file.stat().st_mode & 0o777 == 0o600
    assert context.check_hostname
    async with httpx.AsyncClient(verify=context, trust_env=False) as http:
        assert (await http.get(registry_origin + "/healthz")).status_code == 200


async def test_the_host_name_is_checked(misnamed: str, secret_key: str, tmp_path: Path) -> None:
    context = await bootstrap(misnamed, parse_secret_key(secret_key), tmp_path / "ca.pem")
    async with httpx.AsyncClient(verify=context, trust_env=False) as http:
        with pytest.raises(httpx.ConnectError, match="IP address mismatch"):
            await http.get(misnamed + "/anything")


async def test_a_stored_ca_is_reused(secret_key: str, data_dir: DataDir, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(data_dir.ca_cert.read_bytes())
    # Nothing listens at port 9: reuse must not fetch.
    await bootstrap("https://127.0.0.1:9", parse_secret_key(secret_key), ca_file)


async def test_an_impostor_ca_is_refused(impostor: str, secret_key: str, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    with pytest.raises(TrustError, match="does not match the secret key"):
        await bootstrap(impostor, parse_secret_key(secret_key), ca_file)
    assert not ca_file.exists()


async def test_an_unreachable_core(secret_key: str, tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="cannot fetch"):
        await bootstrap("https://127.0.0.1:9", parse_secret_key(secret_key), tmp_path / "ca.pem")


def test_pinned_certificate_among_several(data_dir: DataDir) -> None:
    ours = data_dir.ca_cert.read_bytes()
    chosen = pinned_certificate(create_ca("Other")[0] + ours, ca_fingerprint(ours))
    assert chosen.strip() == ours.strip()

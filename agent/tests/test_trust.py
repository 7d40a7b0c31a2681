"""Trust bootstrap against a real TLS server whose certificates come from a real core CA."""

from __future__ import annotations

import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sm_agent.trust import (
    MalformedKey,
    TrustError,
    bootstrap,
    core_origin,
    parse_key,
    pinned_certificate,
    verified_context,
)
from sm_shared.access_keys import AccessKey, KeyKind, load_key
from sm_shared.datadir import DataDir
from sm_shared.pki import ca_fingerprint, create_ca, issue_server_cert


@dataclass
class TlsServer:
    origin: str
    paths: list[str] = field(default_factory=list)


def _serve(cert: bytes, key: bytes, ca_pem: bytes, tmp: Path) -> Generator[TlsServer, None, None]:
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert)
    key_file.write_bytes(key)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = ca_pem if self.path == "/ca.pem" else b"pong"
            self.send_response(200 if self.path in ("/ca.pem", "/ping") else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield TlsServer(f"https://127.0.0.1:{httpd.server_address[1]}", seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def core(data_dir: DataDir, tmp_path: Path) -> Iterator[TlsServer]:
    """A server with the core's own certificate, serving the core CA at /ca.pem."""
    yield from _serve(
        data_dir.server_cert.read_bytes(),
        data_dir.server_key.read_bytes(),
        data_dir.ca_cert.read_bytes(),
        tmp_path,
    )


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[TlsServer]:
    """A server with a CA of its own, serving that CA at /ca.pem."""
    ca_cert, ca_key = create_ca("Impostor CA")
    cert, key = issue_server_cert(ca_cert, ca_key, ["127.0.0.1", "localhost"])
    yield from _serve(cert, key, ca_cert, tmp_path)


@pytest.fixture
def enrollment_key(data_dir: DataDir) -> str:
    return str(load_key(data_dir, KeyKind.ENROLLMENT))


def _get(url: str, context: ssl.SSLContext) -> bytes:
    with urllib.request.urlopen(url, context=context, timeout=5) as response:  # noqa: S310 (https test server)
        body: bytes = response.read()
        return body


def test_parse_key_reads_the_fingerprint(data_dir: DataDir, enrollment_key: str) -> None:
    key = parse_key(f"  {enrollment_key}\n")
    assert key.kind == "sme1"
    assert key.fingerprint == ca_fingerprint(data_dir.ca_cert.read_bytes())
    assert key.text == enrollment_key
    assert enrollment_key.split(".")[2] not in repr(key)


def test_parse_key_accepts_enrollment_tokens(data_dir: DataDir) -> None:
    fingerprint = ca_fingerprint(data_dir.ca_cert.read_bytes())
    token = str(AccessKey.generate(KeyKind.ENROLLMENT, fingerprint)).replace("sme1.", "smt1.", 1)
    assert parse_key(token).kind == "smt1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not an enrollment key"),
        ("sme1.abc", "not an enrollment key"),
        ("smx1." + "A" * 43 + "." + "B" * 43, "not an enrollment key"),
        ("sme1." + "A" * 20 + "." + "B" * 43, "not a SHA-256"),
        ("sme1." + "A*" * 22 + "." + "B" * 43, "not base64url"),
        ("sme1." + "A" * 43 + "." + "B" * 10, "truncated"),
        ("sme1." + "A" * 43 + "." + "B" * 40 + "!!!", "truncated or damaged"),
    ],
)
def test_parse_key_refuses_malformed_keys(text: str, message: str) -> None:
    with pytest.raises(MalformedKey, match=message):
        parse_key(text)


def test_parse_key_refuses_the_secret_key_by_name(data_dir: DataDir) -> None:
    secret_key = str(load_key(data_dir, KeyKind.SECRET))
    with pytest.raises(MalformedKey, match="client's secret key"):
        parse_key(secret_key)


def test_core_origin() -> None:
    assert core_origin("core.example.net:8101") == "https://core.example.net:8101"
    assert core_origin("https://core.example.net/some/path") == "https://core.example.net"
    with pytest.raises(TrustError, match="https"):
        core_origin("http://core.example.net")


def test_bootstrap_pins_the_ca_and_verifies_the_core(
    core: TlsServer, data_dir: DataDir, enrollment_key: str, tmp_path: Path
) -> None:
    ca_file = tmp_path / "state" / "ca.pem"
    context = bootstrap(core.origin, parse_key(enrollment_key), ca_file)

    assert ca_file.read_bytes().strip() == data_dir.ca_cert.read_bytes().strip()
    assert ca_file.stat().st_mode & 0o777 == 0o600
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert _get(core.origin + "/ping", context) == b"pong"
    assert core.paths == ["/ca.pem", "/ping"]


def test_a_stored_ca_is_used_without_fetching_again(
    core: TlsServer, enrollment_key: str, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    bootstrap(core.origin, parse_key(enrollment_key), ca_file)
    bootstrap(core.origin, parse_key(enrollment_key), ca_file)
    assert core.paths.count("/ca.pem") == 1


def test_a_ca_that_does_not_match_the_key_is_refused(
    impostor: TlsServer, enrollment_key: str, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    with pytest.raises(TrustError, match="does not match the key") as caught:
        bootstrap(impostor.origin, parse_key(enrollment_key), ca_file)
    assert parse_key(enrollment_key).fingerprint.hex() in str(caught.value)
    assert not ca_file.exists()


def test_a_stale_stored_ca_is_replaced_by_the_pinned_one(
    core: TlsServer, data_dir: DataDir, enrollment_key: str, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(create_ca("Old CA")[0])
    bootstrap(core.origin, parse_key(enrollment_key), ca_file)
    assert ca_file.read_bytes().strip() == data_dir.ca_cert.read_bytes().strip()


def test_the_host_name_is_checked(data_dir: DataDir, enrollment_key: str, tmp_path: Path) -> None:
    # Right CA, but a certificate issued for another name than the one dialled.
    cert, key = issue_server_cert(
        data_dir.ca_cert.read_bytes(), data_dir.ca_key.read_bytes(), ["elsewhere.invalid"]
    )
    servers = _serve(cert, key, data_dir.ca_cert.read_bytes(), tmp_path)
    server = next(servers)
    try:
        context = bootstrap(server.origin, parse_key(enrollment_key), tmp_path / "ca.pem")
        with pytest.raises(urllib.error.URLError) as caught:
            _get(server.origin + "/ping", context)
        assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
        assert "mismatch" in str(caught.value.reason)
    finally:
        servers.close()


def test_an_unreachable_core_is_a_trust_error(enrollment_key: str, tmp_path: Path) -> None:
    with pytest.raises(TrustError, match="cannot fetch"):
        bootstrap("https://127.0.0.1:9", parse_key(enrollment_key), tmp_path / "ca.pem")


def test_pinned_certificate_picks_the_matching_one_of_several(data_dir: DataDir) -> None:
    other = create_ca("Other")[0]
    ours = data_dir.ca_cert.read_bytes()
    fingerprint = ca_fingerprint(ours)
    assert pinned_certificate(other + ours, fingerprint).strip() == ours.strip()
    with pytest.raises(TrustError, match="no certificate"):
        pinned_certificate(b"hello", fingerprint)


def test_verified_context_refuses_another_ca(impostor: TlsServer, data_dir: DataDir) -> None:
    with pytest.raises(urllib.error.URLError) as caught:
        _get(impostor.origin + "/ping", verified_context(data_dir.ca_cert))
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)

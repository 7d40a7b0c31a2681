"""The core CA and the server certificate: constraints, names, a chain that verifies."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from sm_shared.datadir import DataDir
from sm_shared.first_start import initialize
from sm_shared.pki import (
    ca_fingerprint,
    create_ca,
    default_server_names,
    ensure_pki,
    issue_server_cert,
)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_is_an_ecdsa_p256_ca_with_the_right_constraints(data_dir: DataDir) -> None:
    ca = load(data_dir.ca_cert)
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca is True
    assert basic.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)


def test_server_cert_is_a_leaf_for_tls_servers(data_dir: DataDir) -> None:
    cert = load(data_dir.server_cert)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    cert.verify_directly_issued_by(load(data_dir.ca_cert))


def test_server_cert_names_localhost_loopbacks_hostname_and_extra_names(tmp_path: Path) -> None:
    data = DataDir(tmp_path / "data")
    initialize(data, ["core.example.internal", "10.1.2.3", "fd00::7"])
    sans = load(data.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    dns = set(sans.value.get_values_for_type(x509.DNSName))
    ips = set(sans.value.get_values_for_type(x509.IPAddress))
    assert {"localhost", socket.gethostname(), "core.example.internal"} <= dns
    assert {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("fd00::7"),
    } == ips
    # IP addresses are never written as DNS names (clients would not match them).
    assert not dns & {"127.0.0.1", "::1", "10.1.2.3", "fd00::7"}


def test_default_server_names_deduplicate_in_order() -> None:
    names = default_server_names(["localhost", "extra", "", "extra"])
    assert names[:3] == ["localhost", "127.0.0.1", "::1"]
    assert names.count("localhost") == 1
    assert names.count("extra") == 1
    assert "" not in names


def test_fingerprint_is_sha256_of_the_der_certificate(data_dir: DataDir) -> None:
    pem = data_dir.ca_cert.read_bytes()
    der = ssl.PEM_cert_to_DER_cert(pem.decode())
    assert ca_fingerprint(pem) == hashlib.sha256(der).digest()
    assert len(ca_fingerprint(pem)) == 32
    other_pem, _ = create_ca()
    assert ca_fingerprint(other_pem) != ca_fingerprint(pem)


def test_key_files_are_private(data_dir: DataDir) -> None:
    for path in data_dir.key_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> None:
    """A complete TLS handshake in memory (no sockets); raises on failure."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname=name)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for label, side, out, peer_in in (
            ("client", client_side, c_out, s_in),
            ("server", server_side, s_out, c_in),
        ):
            if not done[label]:
                try:
                    side.do_handshake()
                    done[label] = True
                except ssl.SSLWantReadError:
                    pass
            data = out.read()
            if data:
                peer_in.write(data)
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def _contexts(data: DataDir) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(data.server_cert, data.server_key)
    client = ssl.create_default_context(cafile=str(data.ca_cert))
    # What Python 3.13+ turns on by default; the core's certificates must pass it.
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    return server, client


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "::1", socket.gethostname()])
def test_chain_verifies_with_ssl_for_every_default_name(data_dir: DataDir, name: str) -> None:
    server, client = _contexts(data_dir)
    _handshake(server, client, name)


def test_ssl_refuses_a_name_not_in_the_certificate(data_dir: DataDir) -> None:
    server, client = _contexts(data_dir)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "not-this-host.example")


def test_ssl_refuses_a_different_ca(data_dir: DataDir, tmp_path: Path) -> None:
    other = DataDir(tmp_path / "other")
    initialize(other)
    server, _ = _contexts(data_dir)
    _, foreign_client = _contexts(other)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, foreign_client, "localhost")


def test_chain_verifies_with_cryptography(data_dir: DataDir) -> None:
    ca = load(data_dir.ca_cert)
    leaf = load(data_dir.server_cert)
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("localhost"))
    chain = verifier.verify(leaf, [])
    assert chain[-1] == ca
    ip_verifier = (
        PolicyBuilder()
        .store(Store([ca]))
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address("::1")))
    )
    ip_verifier.verify(leaf, [])
    wrong = PolicyBuilder().store(Store([ca])).build_server_verifier(x509.DNSName("example.org"))
    with pytest.raises(VerificationError):
        wrong.verify(leaf, [])


def test_server_key_matches_its_certificate(data_dir: DataDir) -> None:
    key = serialization.load_pem_private_key(data_dir.server_key.read_bytes(), password=None)
    assert key.public_key() == load(data_dir.server_cert).public_key()


def test_issue_server_cert_refuses_a_non_ecdsa_ca_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ca_pem, _ = create_ca()
    other = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(TypeError):
        issue_server_cert(ca_pem, other, ["localhost"])


def test_operator_supplied_certificate_is_kept(data_dir: DataDir) -> None:
    ca_pem, ca_key = create_ca("Operator CA")
    cert, key = issue_server_cert(ca_pem, ca_key, ["core.example"])
    data_dir.server_cert.write_bytes(cert)
    data_dir.server_key.write_bytes(key)
    assert ensure_pki(data_dir, ["ignored.example"]) is False
    assert data_dir.server_cert.read_bytes() == cert
    assert data_dir.server_key.read_bytes() == key


def test_ensure_pki_creates_nothing_twice(data_dir: DataDir) -> None:
    before = {p: p.read_bytes() for p in (data_dir.ca_cert, data_dir.server_cert)}
    assert ensure_pki(data_dir) is False
    assert {p: p.read_bytes() for p in before} == before


def test_issue_server_cert_needs_a_name() -> None:
    ca_pem, ca_key = create_ca()
    with pytest.raises(ValueError, match="at least one name"):
        issue_server_cert(ca_pem, ca_key, [])

"""The enrollment and secret keys: format, parsing, matching, rotation."""

from __future__ import annotations

import hashlib
import hmac
import re
import ssl
import stat

import pytest

from sm_shared import access_keys
from sm_shared.access_keys import (
    AccessKey,
    KeyKind,
    MalformedKey,
    b64url,
    b64url_decode,
    load_key,
    rotate_access_key,
)
from sm_shared.datadir import DataDir

KEY_FORMAT = re.compile(r"^(sme1|sms1)\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{43})$")


def ca_der_sha256(data: DataDir) -> bytes:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(data.ca_cert.read_text())).digest()


@pytest.mark.parametrize(
    ("kind", "prefix"), [(KeyKind.ENROLLMENT, "sme1"), (KeyKind.SECRET, "sms1")]
)
def test_first_start_writes_both_keys_in_the_documented_format(
    data_dir: DataDir, kind: KeyKind, prefix: str
) -> None:
    path = data_dir.enrollment_key if kind is KeyKind.ENROLLMENT else data_dir.secret_key
    text = path.read_text().strip()
    match = KEY_FORMAT.match(text)
    assert match is not None, text
    assert match.group(1) == prefix
    # The middle part is the SHA-256 of the CA certificate's DER, unpadded base64url.
    assert b64url_decode(match.group(2)) == ca_der_sha256(data_dir)
    assert len(b64url_decode(match.group(3))) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_key(data_dir, kind)
    assert str(key) == text
    assert key.fingerprint == ca_der_sha256(data_dir)


def test_the_two_keys_differ(data_dir: DataDir) -> None:
    enrollment = load_key(data_dir, KeyKind.ENROLLMENT)
    secret = load_key(data_dir, KeyKind.SECRET)
    assert enrollment.secret != secret.secret
    assert enrollment.fingerprint == secret.fingerprint


def test_parse_round_trips_and_tolerates_surrounding_whitespace(data_dir: DataDir) -> None:
    key = load_key(data_dir, KeyKind.SECRET)
    assert AccessKey.parse(f"  {key}\n", KeyKind.SECRET) == key


def test_repr_does_not_leak_the_secret(data_dir: DataDir) -> None:
    key = load_key(data_dir, KeyKind.SECRET)
    assert key.secret not in repr(key)


def _valid(kind: KeyKind = KeyKind.SECRET) -> AccessKey:
    return AccessKey.generate(kind, bytes(range(32)))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("sms1", "one part"),
        ("sms1.abc", "two parts"),
        (f"sms1.{b64url(bytes(32))}.{'A' * 43}.extra", "four parts"),
        (f"sme1.{b64url(bytes(32))}.{'A' * 43}", "the other kind's prefix"),
        (f"SMS1.{b64url(bytes(32))}.{'A' * 43}", "prefix is case sensitive"),
        (f"sms2.{b64url(bytes(32))}.{'A' * 43}", "unknown version"),
        (f"sms1.{b64url(bytes(31))}.{'A' * 43}", "short fingerprint"),
        (f"sms1.{b64url(bytes(33))}.{'A' * 43}", "long fingerprint"),
        (f"sms1.{b64url(bytes(32))[:-1]}!.{'A' * 43}", "fingerprint not base64url"),
        (f"sms1.{b64url(bytes(32))}+.{'A' * 43}", "fingerprint with a standard-alphabet char"),
        (f"sms1.{b64url(bytes(32))}.{'A' * 42}", "truncated secret"),
        (f"sms1.{b64url(bytes(32))}.{'A' * 44}", "overlong secret"),
        (f"sms1.{b64url(bytes(32))}.{'A' * 42}=", "secret with padding"),
        (f"sms1.{b64url(bytes(32))}.{'A' * 42}é", "secret with a non-ASCII char"),
        (f"sms1..{'A' * 43}", "empty fingerprint"),
    ],
)
def test_parse_refuses_malformed_text(text: str, reason: str) -> None:
    with pytest.raises(MalformedKey):
        AccessKey.parse(text, KeyKind.SECRET)


def test_malformed_key_is_a_value_error() -> None:
    assert issubclass(MalformedKey, ValueError)


def test_matches_accepts_only_the_same_key() -> None:
    key = _valid()
    assert key.matches(str(key))
    assert key.matches(f" {key}\n")
    assert not key.matches(str(_valid()))
    assert not key.matches(str(key)[:-1])
    assert not key.matches(str(key) + "A")
    assert not key.matches("")
    # A key of the other kind with the same secret is a different key.
    other = AccessKey(KeyKind.ENROLLMENT, key.fingerprint, key.secret)
    assert not key.matches(str(other))
    # Non-ASCII input is refused, not an exception.
    assert not key.matches("é" * 91)


def test_matches_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Timing cannot be measured reliably in a test; prove the comparison goes
    # through hmac.compare_digest (the real one, only recorded) with the whole text.
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    key = _valid()
    candidate = str(_valid())
    assert not key.matches(candidate)
    assert calls == [(str(key).encode(), candidate.encode())]


def test_rotate_replaces_one_key_and_keeps_the_fingerprint(data_dir: DataDir) -> None:
    old_enrollment = load_key(data_dir, KeyKind.ENROLLMENT)
    old_secret = load_key(data_dir, KeyKind.SECRET)
    new = rotate_access_key(data_dir, KeyKind.ENROLLMENT)
    assert new != old_enrollment
    assert new.fingerprint == old_enrollment.fingerprint == ca_der_sha256(data_dir)
    loaded = load_key(data_dir, KeyKind.ENROLLMENT)
    assert loaded == new
    assert not loaded.matches(str(old_enrollment))
    assert stat.S_IMODE(data_dir.enrollment_key.stat().st_mode) == 0o600
    # The other key is untouched.
    assert load_key(data_dir, KeyKind.SECRET) == old_secret


def test_ensure_access_keys_keeps_existing_keys(data_dir: DataDir) -> None:
    before = data_dir.secret_key.read_bytes()
    assert access_keys.ensure_access_keys(data_dir) is False
    assert data_dir.secret_key.read_bytes() == before
    data_dir.secret_key.unlink()
    assert access_keys.ensure_access_keys(data_dir) is True
    assert data_dir.secret_key.read_bytes() != before
    assert data_dir.enrollment_key.exists()

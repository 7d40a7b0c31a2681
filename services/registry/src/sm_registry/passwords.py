"""User passwords: argon2id hashes (argon2-cffi, RFC 9106 parameters).

Hashing and verifying cost a deliberate ~0.1-0.2 s of CPU: callers in async
code run them in a worker thread.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    return _hasher().hash("a password nobody has")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; parameters encoded in it)."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches ``password_hash``."""
    try:
        return _hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_nothing(password: str) -> bool:
    """Spend the time a real verification takes, then fail.

    Used for unknown user names, so the answer time does not tell a caller
    whether the name exists.
    """
    verify_password(_dummy_hash(), password)
    return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True

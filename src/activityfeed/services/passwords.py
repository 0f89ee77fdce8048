"""Password hashing with argon2id at or above OWASP's minimum (m=19 MiB, t=2, p=1)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
#: Verified against when the e-mail is unknown, so that timing does not tell.
_DUMMY_HASH = _HASHER.hash("not a real password")

MIN_LENGTH = 8
MAX_LENGTH = 1024


def _secret(password: str) -> bytes:
    # "surrogatepass" gives every str (even one with a lone surrogate from JSON) the
    # same bytes each time, where plain UTF-8 would raise and answer 500.
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    return _HASHER.hash(_secret(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash, spends the same time and says no."""
    try:
        is_match = _HASHER.verify(password_hash or _DUMMY_HASH, _secret(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return is_match and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)

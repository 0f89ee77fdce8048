"""Identifiers and secrets."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_FROM_RFC4648 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


def new_id(prefix: str = "", *, now_ms: int | None = None) -> str:
    """A ULID-like id: 48 bits of milliseconds then 80 random bits, Crockford base32.

    Ids made later sort after ids made earlier (to the millisecond), so an id is
    "sortable by creation" without a central counter.
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    # 26 characters hold 130 bits: the value with two zero bits on top. base32 reads
    # bits from the left, so shift the value to end six bits before a 17-byte boundary
    # and keep the first 26 characters (C speed; ingestion makes a thousand at once).
    encoded = base64.b32encode((value << 6).to_bytes(17, "big"))[:26]
    return prefix + encoded.decode("ascii").translate(_FROM_RFC4648)


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret with ``nbytes`` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """The SHA-256 hex digest under which a high-entropy secret is stored.

    Session ids and API keys carry at least 128 random bits, so a fast hash is safe
    here (a slow password hash would only slow every request).
    """
    return hashlib.sha256(secret.encode()).hexdigest()

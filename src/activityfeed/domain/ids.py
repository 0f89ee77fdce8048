"""Identifiers and secrets."""

from __future__ import annotations

import base64
import hashlib
import os
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


def new_ids(n: int, *, now_ms: int) -> list[str]:
    """``n`` ids of the millisecond ``now_ms`` (as ``new_id``), sorted: one read of the
    system's randomness for the whole batch instead of one per id."""
    head = now_ms << 80
    raw = os.urandom(10 * n)
    from_bytes = int.from_bytes
    values = sorted(head | from_bytes(raw[i : i + 10], "big") for i in range(0, 10 * n, 10))
    # Each id as 20 bytes (the value shifted as in ``new_id``, then 24 zero bits): 20
    # bytes are 32 base32 characters exactly, so one encoding of all of them splits
    # into one 32-character group per id, whose first 26 characters are the id.
    packed = b"".join((v << 30).to_bytes(20, "big") for v in values)
    text = base64.b32encode(packed).decode("ascii").translate(_FROM_RFC4648)
    return [text[i : i + 26] for i in range(0, 32 * n, 32)]


def new_secret(nbytes: int = 32) -> str:
    """A URL-safe random secret with ``nbytes`` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """The SHA-256 hex digest under which a high-entropy secret is stored.

    Session ids and API keys carry at least 128 random bits, so a fast hash is safe
    here (a slow password hash would only slow every request).
    """
    return hashlib.sha256(secret.encode()).hexdigest()

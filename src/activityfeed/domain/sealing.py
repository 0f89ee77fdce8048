"""Sealed positions: what a client is handed to say "from here" reveals nothing.

A keyset cursor and a live-stream position are made of the database's own counters
(``events.seq``, ``stream_changes.seq``), which every workspace shares: two positions in
the clear would tell a member how many events and state changes were recorded in other
workspaces between them. Sealed with the installation's key (AES-SIV: deterministic,
authenticated), a position is an opaque token of fixed length: nothing about the counters
can be read from it, and a token this server did not make (forged, edited, or from
another installation) fails to open. A stream position is bound to its workspace and
viewer as associated data, so it opens only in the stream it was made for.

The key lives in the database (``store.secrets``), shared by every worker and kept with
the data it describes; see docs/decisions/0004-sealed-positions.md.
"""

from __future__ import annotations

import base64
import binascii
import struct
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from activityfeed.domain.query import Cursor
from activityfeed.domain.stream import StreamPosition
from activityfeed.errors import InvalidRequest

#: Bytes of key AES-SIV takes for AES-256 (two 256-bit keys: one to authenticate, one
#: to encrypt).
KEY_BYTES = 64

_TWO_INTS = struct.Struct(">qq")
#: A sealed pair of integers: the 16-byte synthetic IV, then the 16 bytes of the pair,
#: base64url without padding.
_TOKEN_CHARS = 43
_CURSOR = b"activityfeed cursor v2"
_STREAM = b"activityfeed stream v2"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class Sealer:
    """Seals and opens the positions handed to clients, with one installation's key."""

    __slots__ = ("_siv", "key")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a sealing key is {KEY_BYTES} bytes, not {len(key)}")
        self.key = key
        self._siv = AESSIV(key)

    def seal_cursor(self, cursor: Cursor) -> str:
        """The ``nextCursor`` a client is given for ``cursor``."""
        # Integer arithmetic: a float timestamp can round the microsecond away, and a cursor
        # one microsecond off would skip the events that share the last row's createdAt.
        micros = (cursor.created_at - _EPOCH) // _MICROSECOND
        return self._seal(micros, cursor.seq, [_CURSOR])

    def open_cursor(self, text: str) -> Cursor:
        """The cursor in ``text``; ``InvalidRequest`` (field ``cursor``) unless this
        installation sealed it."""
        pair = self._open(text, [_CURSOR])
        try:
            if pair is None or pair[1] <= 0:
                raise ValueError(text)
            created = _EPOCH + timedelta(microseconds=pair[0])
        except (ValueError, OverflowError):
            raise InvalidRequest(
                "The cursor is not one this server gave out; start again without it.",
                field="cursor",
            ) from None
        return Cursor(created_at=created, seq=pair[1])

    def seal_position(self, position: StreamPosition, *, workspace_id: str, user_id: str) -> str:
        """The SSE id (and the page's ``data-stream-position``) for ``position`` in this
        viewer's stream of this workspace."""
        return self._seal(
            position.event_seq, position.change_seq, _stream_context(workspace_id, user_id)
        )

    def open_position(
        self, raw: str | None, *, workspace_id: str, user_id: str
    ) -> StreamPosition | None:
        """The position in ``raw`` if this installation sealed it for this viewer's
        stream of this workspace, else None ("unknown": the stream starts now and first
        sends ``reset``)."""
        if raw is None:
            return None
        pair = self._open(raw.strip(), _stream_context(workspace_id, user_id))
        if pair is None or pair[0] < 0 or pair[1] < 0:
            return None
        return StreamPosition(event_seq=pair[0], change_seq=pair[1])

    def _seal(self, first: int, second: int, context: list[bytes]) -> str:
        sealed = self._siv.encrypt(_TWO_INTS.pack(first, second), context)
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def _open(self, text: str, context: list[bytes]) -> tuple[int, int] | None:
        if len(text) != _TOKEN_CHARS:
            return None
        try:
            sealed = base64.urlsafe_b64decode(text + "=")
            # 43 characters hold 258 bits for 256: the decoder ignores the last one's two
            # spare bits, so four spellings would open. Only the one we wrote does.
            if base64.urlsafe_b64encode(sealed).decode()[:_TOKEN_CHARS] != text:
                return None
            first, second = _TWO_INTS.unpack(self._siv.decrypt(sealed, context))
        except (ValueError, binascii.Error, InvalidTag, struct.error):
            return None
        return int(first), int(second)


def _stream_context(workspace_id: str, user_id: str) -> list[bytes]:
    return [_STREAM, workspace_id.encode(), user_id.encode()]

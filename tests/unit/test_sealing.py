"""Sealed positions (cursors and SSE ids): opaque, authenticated, bound to their stream;
and the SSE text of a message."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activityfeed.domain.query import Cursor
from activityfeed.domain.sealing import KEY_BYTES, Sealer
from activityfeed.domain.stream import Message, MessageType, StreamPosition
from activityfeed.errors import InvalidRequest

WS = "w_01jdxk8y7q3v9m2n4p6r8t0w2y"
USER = "u_01jdxk8y7q3v9m2n4p6r8t0w2z"
SEALER = Sealer(bytes(range(KEY_BYTES)))
seqs = st.integers(min_value=0, max_value=2**63 - 1)
instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@given(instants, seqs.filter(lambda n: n > 0))
def test_a_sealed_cursor_opens_to_itself(created_at: datetime, seq: int) -> None:
    cursor = Cursor(created_at=created_at, seq=seq)
    assert SEALER.open_cursor(SEALER.seal_cursor(cursor)) == cursor


@given(seqs, seqs)
def test_a_sealed_position_opens_to_itself_in_its_own_stream(
    event_seq: int, change_seq: int
) -> None:
    position = StreamPosition(event_seq, change_seq)
    sealed = SEALER.seal_position(position, workspace_id=WS, user_id=USER)
    assert SEALER.open_position(sealed, workspace_id=WS, user_id=USER) == position


def test_sealed_tokens_are_fixed_length_url_safe_and_say_nothing_of_the_counters() -> None:
    """Neighbouring seqs give unrelated tokens: no digit, no length, no shared prefix
    tells how far apart two positions are (the counters are every workspace's)."""
    at = datetime(2026, 3, 10, tzinfo=UTC)
    tokens = [SEALER.seal_cursor(Cursor(at, seq)) for seq in (1, 2, 1000, 2**62)]
    tokens += [
        SEALER.seal_position(StreamPosition(e, c), workspace_id=WS, user_id=USER)
        for e, c in ((0, 0), (1, 0), (0, 1), (10**12, 5))
    ]
    assert len(set(tokens)) == len(tokens)
    assert {len(t) for t in tokens} == {43}
    for token in tokens:
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len({t[:4] for t in tokens}) == len(tokens)
    # Deterministic: the same position is the same token (a client can compare them).
    assert SEALER.seal_cursor(Cursor(at, 2)) == tokens[1]


def test_a_position_opens_only_in_the_stream_it_was_made_for() -> None:
    sealed = SEALER.seal_position(StreamPosition(5, 5), workspace_id=WS, user_id=USER)
    assert SEALER.open_position(sealed, workspace_id=WS + "x", user_id=USER) is None
    assert SEALER.open_position(sealed, workspace_id=WS, user_id=USER + "x") is None
    # A cursor is not a position, nor the other way round.
    cursor = SEALER.seal_cursor(Cursor(datetime(2026, 1, 1, tzinfo=UTC), 5))
    assert SEALER.open_position(cursor, workspace_id=WS, user_id=USER) is None
    with pytest.raises(InvalidRequest):
        SEALER.open_cursor(sealed)


def test_another_installations_tokens_do_not_open() -> None:
    other = Sealer(os.urandom(KEY_BYTES))
    position = other.seal_position(StreamPosition(1, 1), workspace_id=WS, user_id=USER)
    assert SEALER.open_position(position, workspace_id=WS, user_id=USER) is None
    with pytest.raises(InvalidRequest):
        SEALER.open_cursor(other.seal_cursor(Cursor(datetime(2026, 1, 1, tzinfo=UTC), 1)))


def _flipped(token: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "="))
    raw[index] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def _respelled(token: str) -> list[str]:
    """The other spellings of ``token`` a lenient base64 decoder reads as the same bytes
    (the last character's two spare bits)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    return [token[:-1] + alphabet[(last & ~3) | low] for low in range(4) if low != last & 3]


def _garbage(sealed: str) -> list[str]:
    return [
        "",
        "garbage",
        "12.3.abcd0123",  # the old clear format
        sealed[:-1],
        sealed + "A",
        sealed.upper(),
        _flipped(sealed, 0),
        _flipped(sealed, 31),
        *_respelled(sealed),
        "=" * 43,
        "\u00e9" * 43,
        "x" * 5000,
    ]


def test_garbled_positions_are_unknown() -> None:
    sealed = SEALER.seal_position(StreamPosition(7, 3), workspace_id=WS, user_id=USER)
    assert SEALER.open_position(None, workspace_id=WS, user_id=USER) is None
    for raw in _garbage(sealed):
        assert SEALER.open_position(raw, workspace_id=WS, user_id=USER) is None, raw


def test_garbled_cursors_are_invalid_requests_naming_the_cursor() -> None:
    sealed = SEALER.seal_cursor(Cursor(datetime(2026, 1, 1, tzinfo=UTC), 9))
    for raw in _garbage(sealed):
        with pytest.raises(InvalidRequest) as caught:
            SEALER.open_cursor(raw)
        assert caught.value.field == "cursor", raw


def test_a_sealed_cursor_of_no_event_does_not_open() -> None:
    """Sealing is not validation: a cursor this server could never give out (seq 0, a
    date outside the calendar) is refused even when its seal is good."""
    zero = SEALER.seal_cursor(Cursor(datetime(2026, 1, 1, tzinfo=UTC), 0))
    with pytest.raises(InvalidRequest):
        SEALER.open_cursor(zero)
    far = SEALER._seal(2**62, 1, [b"activityfeed cursor v2"])
    with pytest.raises(InvalidRequest):
        SEALER.open_cursor(far)


def test_a_key_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        Sealer(b"short")


def test_advancing_never_goes_back() -> None:
    p = StreamPosition(10, 3)
    assert p.advanced(event_seq=4) == p
    assert p.advanced(event_seq=12) == StreamPosition(12, 3)
    assert p.advanced(change_seq=9) == StreamPosition(10, 9)


def test_a_message_is_event_id_and_one_data_line() -> None:
    message = Message(MessageType.ACTIVITY, {"text": "two\nlines", "n": 1}, "sealed-id")
    text = message.encode()
    assert text.endswith("\n\n")
    lines = text.rstrip("\n").split("\n")
    assert lines[:2] == ["event: activity", "id: sealed-id"]
    assert len(lines) == 3
    assert json.loads(lines[2].removeprefix("data: ")) == {"text": "two\nlines", "n": 1}


def test_instants_round_trip_to_the_microsecond() -> None:
    at = datetime(2026, 3, 10, 12, 0, 0, 999_999, tzinfo=UTC) + timedelta(microseconds=1)
    assert SEALER.open_cursor(SEALER.seal_cursor(Cursor(at, 3))).created_at == at

"""Stream positions (the opaque SSE ids) and the SSE text of a message."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activityfeed.domain.stream import (
    Message,
    MessageType,
    StreamPosition,
    parse_position,
    workspace_tag,
)

WS = "w_01jdxk8y7q3v9m2n4p6r8t0w2y"
seqs = st.integers(min_value=0, max_value=2**63 - 1)


@given(seqs, seqs)
def test_format_then_parse_is_the_same_position(event_seq: int, change_seq: int) -> None:
    position = StreamPosition(event_seq, change_seq, workspace_tag(WS))
    assert parse_position(position.format(), workspace_id=WS) == position


def test_the_format_is_event_change_and_workspace_tag() -> None:
    position = StreamPosition(42, 7, workspace_tag(WS))
    assert position.format() == f"42.7.{workspace_tag(WS)}"
    assert len(workspace_tag(WS)) == 8
    assert workspace_tag(WS) != workspace_tag(WS + "x")


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "garbage",
        "1.2",
        "1.2.3.4",
        "-1.0.{tag}",
        "01.0.{tag}",
        "1.0.{tag}x",
        "1.0.{TAG}",
        "a.0.{tag}",
        "1 .0.{tag}",
        "1.0.00000000",
        "99999999999999999999.0.{tag}",
    ],
)
def test_garbled_or_foreign_positions_are_unknown(raw: str | None) -> None:
    tag = workspace_tag(WS)
    text = raw.format(tag=tag, TAG=tag.upper()) if raw is not None else None
    assert parse_position(text, workspace_id=WS) is None


def test_a_position_of_another_workspace_is_unknown() -> None:
    raw = StreamPosition(5, 5, workspace_tag("w_other")).format()
    assert parse_position(raw, workspace_id=WS) is None
    assert parse_position(raw, workspace_id="w_other") is not None


def test_advancing_never_goes_back() -> None:
    p = StreamPosition(10, 3, "abcd0123")
    assert p.advanced(event_seq=4) == p
    assert p.advanced(event_seq=12) == StreamPosition(12, 3, "abcd0123")
    assert p.advanced(change_seq=9) == StreamPosition(10, 9, "abcd0123")


def test_a_message_is_event_id_and_one_data_line() -> None:
    message = Message(MessageType.ACTIVITY, {"text": "two\nlines", "n": 1}, "1.2.abcd0123")
    text = message.encode()
    assert text.endswith("\n\n")
    lines = text.rstrip("\n").split("\n")
    assert lines[:2] == ["event: activity", "id: 1.2.abcd0123"]
    assert len(lines) == 3
    assert json.loads(lines[2].removeprefix("data: ")) == {"text": "two\nlines", "n": 1}

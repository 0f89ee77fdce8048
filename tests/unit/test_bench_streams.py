"""The benchmark's lean live-stream reader (``_LeanStream``) and its garbage-collection
probe: what they record, whatever way the bytes arrive."""

from __future__ import annotations

import asyncio
import gc
import json

from activityfeed.cli.bench import GcPauses, _LeanStream, gc_pauses
from activityfeed.domain.stream import HEARTBEAT_FRAME, Message, MessageType, retry_frame


def _chunked(*parts: str) -> bytes:
    """An SSE response as uvicorn sends it: chunked, a chunk per frame."""
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    body = b"".join(f"{len(p.encode()):x}\r\n".encode() + p.encode() + b"\r\n" for p in parts)
    return head + body


def _activity(resource_id: str) -> str:
    data = {"event": {"resourceId": resource_id, "resourceName": "a\n\nb"}, "unseenCount": 1}
    return Message(MessageType.ACTIVITY, data, "p1").encode()


def _reader() -> tuple[_LeanStream, dict[str, float], asyncio.Event]:
    arrivals: dict[str, float] = {}
    ready = asyncio.Event()
    return _LeanStream(b"GET / HTTP/1.1\r\n\r\n", arrivals, ready), arrivals, ready


def test_arrivals_are_read_however_the_bytes_are_cut() -> None:
    unseen = Message(MessageType.UNSEEN, {"unseenCount": 0, "workspaces": {}}, "p0").encode()
    response = _chunked(retry_frame(), unseen, HEARTBEAT_FRAME, _activity("r-1"), _activity("r-2"))
    for size in (1, 3, 7, len(response)):
        reader, arrivals, ready = _reader()
        for i in range(0, len(response), size):
            reader.data_received(response[i : i + size])
        assert ready.is_set()
        assert list(arrivals) == ["r-1", "r-2"]
        assert reader.error is None


def test_an_arrival_is_timed_when_its_last_bytes_came() -> None:
    reader, arrivals, _ = _reader()
    response = _chunked(_activity("r-1"))
    reader.data_received(response[:-20])
    assert arrivals == {}
    reader.data_received(response[-20:])
    # The time taken on entry to data_received, before the frame was parsed.
    assert arrivals["r-1"] == reader._now


def test_a_refused_stream_says_why_and_stops_the_wait() -> None:
    reader, arrivals, ready = _reader()
    reader.data_received(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n\r\n{}")
    assert ready.is_set()
    assert reader.error == "GET /api/activity/stream answered 429"
    assert arrivals == {}


def test_a_stream_closed_before_its_first_message_is_an_error() -> None:
    reader, _, ready = _reader()
    reader.connection_lost(None)
    assert ready.is_set()
    assert reader.error is not None


def test_gc_pauses_counts_the_collections_inside_its_block_only() -> None:
    gc.disable()  # no automatic collection inside the test: the count is exact
    try:
        gc.collect()
        with gc_pauses() as pauses:
            gc.collect()
            gc.collect()
        gc.collect()
    finally:
        gc.enable()
    assert pauses.count == 2
    assert 0 < pauses.max_ms <= pauses.total_ms
    assert isinstance(pauses, GcPauses)
    assert json.dumps(pauses.__dict__)

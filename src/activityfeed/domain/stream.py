"""The live stream's positions and message shapes (pure; no I/O).

A stream position says how far a client has read one workspace's stream: the newest
event (``events.seq``) and the newest state change of that user (``stream_changes.seq``)
it has been sent. On the wire it is the SSE id, sealed (``domain.sealing``) and bound to
the workspace and the viewer: those counters are shared by every workspace, and a
position taken in one workspace must never apply to another (the active workspace can
change between two connections).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: At most this many messages are replayed to a reconnecting client (or sent in one go);
#: past that it gets ``reset`` and reloads its list instead.
REPLAY_LIMIT = 500

#: What the browser waits before it reconnects, in milliseconds (the first line sent).
RETRY_MS = 2000


class MessageType(StrEnum):
    ACTIVITY = "activity"
    STATE = "state"
    UNSEEN = "unseen"
    RESET = "reset"


class StateAction(StrEnum):
    SEEN = "seen"
    ARCHIVED = "archived"
    RESTORED = "restored"


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """How far a client has read: the newest event and state change it was sent."""

    event_seq: int
    change_seq: int

    def advanced(
        self, *, event_seq: int | None = None, change_seq: int | None = None
    ) -> StreamPosition:
        """This position moved forward (never backward) to the given seqs."""
        return StreamPosition(
            event_seq=max(self.event_seq, event_seq or 0),
            change_seq=max(self.change_seq, change_seq or 0),
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One SSE message: its type, its JSON data and the position after it (its id)."""

    type: MessageType
    data: dict[str, Any]
    position: str

    def encode(self) -> str:
        """The message as SSE text: ``event``, ``id`` and one ``data`` line."""
        # json.dumps never emits a raw newline, so the data is always one line.
        data = json.dumps(self.data, separators=(",", ":"))
        return f"event: {self.type.value}\nid: {self.position}\ndata: {data}\n\n"


def retry_frame() -> str:
    return f"retry: {RETRY_MS}\n\n"


HEARTBEAT_FRAME = ": keep-alive\n\n"

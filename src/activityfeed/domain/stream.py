"""The live stream's positions and message shapes (pure; no I/O).

A stream position says how far a client has read one workspace's stream: the newest
event (``events.seq``) and the newest state change of that user (``stream_changes.seq``)
it has been sent, plus a short tag of the workspace, so that a position taken in one
workspace is never applied to another (the active workspace can change between two
connections). On the wire it is the opaque SSE id ``"<event_seq>.<change_seq>.<tag>"``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: At most this many messages are replayed to a reconnecting client (or sent in one go);
#: past that it gets ``reset`` and reloads its list instead.
REPLAY_LIMIT = 500

#: What the browser waits before it reconnects, in milliseconds (the first line sent).
RETRY_MS = 2000

_POSITION = re.compile(r"^(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})\.([0-9a-f]{8})$")


class MessageType(StrEnum):
    ACTIVITY = "activity"
    STATE = "state"
    UNSEEN = "unseen"
    RESET = "reset"


class StateAction(StrEnum):
    SEEN = "seen"
    ARCHIVED = "archived"
    RESTORED = "restored"


def workspace_tag(workspace_id: str) -> str:
    """Eight hex characters that tell one workspace's positions from another's."""
    return hashlib.blake2s(workspace_id.encode(), digest_size=4).hexdigest()


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """How far a client has read: the newest event and state change it was sent."""

    event_seq: int
    change_seq: int
    tag: str

    def format(self) -> str:
        return f"{self.event_seq}.{self.change_seq}.{self.tag}"

    def advanced(
        self, *, event_seq: int | None = None, change_seq: int | None = None
    ) -> StreamPosition:
        """This position moved forward (never backward) to the given seqs."""
        return StreamPosition(
            event_seq=max(self.event_seq, event_seq or 0),
            change_seq=max(self.change_seq, change_seq or 0),
            tag=self.tag,
        )


def parse_position(raw: str | None, *, workspace_id: str) -> StreamPosition | None:
    """The position in ``raw`` if it is well formed and of this workspace, else None.

    None means "unknown": the stream then starts now and first sends ``reset``.
    """
    if raw is None:
        return None
    match = _POSITION.match(raw.strip())
    if match is None or match.group(3) != workspace_tag(workspace_id):
        return None
    return StreamPosition(int(match.group(1)), int(match.group(2)), match.group(3))


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

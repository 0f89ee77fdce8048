"""Per-viewer seen/archived state: watermarks plus per-event exceptions.

"Mark all seen" and "Archive all" must cost the same at any history length, so they
never touch event rows. Each viewer keeps, per workspace, two watermarks over the
arrival order (``seq``) of events, and a sparse set of per-event exceptions:

* seen(e)     = exception.seen     if set, else e.seq <= seen_watermark
* archived(e) = exception.archived if set, else e.seq <= archived_watermark

Watermarks follow arrival, not ``createdAt``: an event ingested after an "Archive all"
with an ``occurredAt`` in the past still lands in the Inbox.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Watermarks:
    """A viewer's two watermarks in one workspace, each an event's ``seq`` and its
    ``ws_ord`` (its 1-based position in the workspace), or 0/0 for "none yet"."""

    seen_seq: int = 0
    seen_ord: int = 0
    archived_seq: int = 0
    archived_ord: int = 0


#: A viewer's watermarks in a workspace beside the workspace's head (its newest event's
#: ``seq`` and ``ws_ord``, or 0/0), as one read transaction saw them.
MarksAndHead = tuple[Watermarks, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Exception_:
    """A per-event override of the watermark rule (None = no override)."""

    is_seen: bool | None = None
    is_archived: bool | None = None


def is_seen(seq: int, marks: Watermarks, exc: Exception_ | None) -> bool:
    if exc is not None and exc.is_seen is not None:
        return exc.is_seen
    return seq <= marks.seen_seq


def is_archived(seq: int, marks: Watermarks, exc: Exception_ | None) -> bool:
    if exc is not None and exc.is_archived is not None:
        return exc.is_archived
    return seq <= marks.archived_seq

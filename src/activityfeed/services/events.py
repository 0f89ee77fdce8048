"""Recording events: the one way an event comes into being."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from activityfeed.domain.events import Event, EventDraft, describe
from activityfeed.domain.ids import new_ids
from activityfeed.store import accounts as account_store
from activityfeed.store import chain as chain_store
from activityfeed.store import events as store
from activityfeed.store import stream as stream_store
from activityfeed.store.db import Tx


def record_events(tx: Tx, drafts: Sequence[EventDraft], *, now: datetime) -> list[Event]:
    """Record events of one workspace inside the caller's transaction.

    The platform's own code calls this in the same transaction as the change the event
    describes, so there is never a change without its event or an event without its
    change. ``createdAt`` is the draft's ``occurred_at`` or the recording time: ``now``,
    or the workspace's newest ``recorded_at`` when ``now`` is older (a writer that read
    the clock and then waited for the lock), so server-given times never go backwards in
    arrival order. The description is generated when the draft has none. Live streams
    are woken when the transaction commits (PostgreSQL NOTIFY; SQLite processes tail the
    table).
    """
    if not drafts:
        return []
    workspace_ids = {d.workspace_id for d in drafts}
    if len(workspace_ids) != 1:
        raise ValueError("record_events takes the events of one workspace at a time")
    (workspace_id,) = workspace_ids
    account_store.lock_workspace(tx, workspace_id, exclusive=True)
    # Read under the lock, so it is the newest committed event (insert_events needs its
    # ws_ord and digest anyway: no extra round trip).
    head = chain_store.select_head(tx, workspace_id)
    # Callers read the clock before they hold the lock (ingestion before BEGIN IMMEDIATE
    # or FOR NO KEY UPDATE), so a writer that waited may hold a time older than the event
    # it now follows. Recording below the head would list it, newest createdAt first,
    # under an event a live tab showed before it (arrival order). The floor is the head's
    # recorded_at: the server's own time, so a producer's occurredAt (backdated, or up to
    # 5 minutes ahead) is neither raised nor raises later events; and this workspace's,
    # so a clock set back on purpose (tests building history) still records its own time
    # in a workspace that holds nothing newer.
    if head.recorded_at is not None and now < head.recorded_at:
        now = head.recorded_at
    now_ms = int(now.timestamp() * 1000)
    # Ids of one millisecond differ only in their random part: sorted, a batch's ids
    # follow the order its events are recorded in ("sortable by creation").
    ids = new_ids(len(drafts), now_ms=now_ms)
    new = [
        store.NewEvent(
            draft=d,
            id=event_id,
            created_at=d.occurred_at or now,
            recorded_at=now,
            description=(
                d.description
                if d.description and d.description.strip()
                else describe(d.resource_type, d.action, d.resource_name)
            ),
        )
        for d, event_id in zip(drafts, ids, strict=True)
    ]
    recorded = store.insert_events(tx, workspace_id, new, head=head)
    # Delivered to every process's live stream only if and when this transaction commits.
    stream_store.notify_events(tx, workspace_id)
    return recorded


def record_event(tx: Tx, draft: EventDraft, *, now: datetime) -> Event:
    """Record one event; see ``record_events``."""
    return record_events(tx, [draft], now=now)[0]


def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, to the microsecond when there is one."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_json(e: Event, *, seen: bool, archived: bool) -> dict[str, Any]:
    """An event as JSON with one viewer's state: the one shape that the API, the live
    stream and the personal-data export share (the API adds its per-page fields)."""
    source: dict[str, Any] = {"kind": e.source.kind.value}
    if e.source.api_key_prefix:
        source["apiKeyPrefix"] = e.source.api_key_prefix
    return {
        "id": e.id,
        "workspaceId": e.workspace_id,
        "resourceType": e.resource_type.value,
        "resourceId": e.resource_id,
        "resourceName": e.resource_name,
        "action": e.action.value,
        "description": e.description,
        "actor": (
            {"id": e.actor.id, "name": e.actor.name, "email": e.actor.email} if e.actor else None
        ),
        "source": source,
        "createdAt": rfc3339(e.created_at),
        "metadata": e.metadata,
        "seen": seen,
        "archived": archived,
    }

"""The reads of the personal-data export: memberships, keys a user made, events by arrival.

Every query here runs inside the caller's one read transaction, so the parts of an
export describe one snapshot. Events are read in keyset chunks over the arrival order
(``workspace_id``, ``seq``) from ``ux_events_arrival``, so memory does not grow with
history and no chunk costs more than the one before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select

from activityfeed.domain.accounts import ApiKey, Membership, Scope, Workspace
from activityfeed.domain.events import Action, Actor, Event, ResourceType, Source, SourceKind
from activityfeed.domain.state import Watermarks
from activityfeed.domain.workspaces import Role
from activityfeed.store.db import Tx
from activityfeed.store.events import Row, archived_expr, seen_expr, visible
from activityfeed.store.schema import api_keys, event_states, events, memberships, workspaces


@dataclass(frozen=True, slots=True)
class JoinedMembership:
    """A membership with the moment the user joined the workspace."""

    membership: Membership
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class OwnKey:
    """An API key the user created, with its workspace's slug (never its secret hash)."""

    key: ApiKey
    workspace_slug: str


def select_joined_memberships(tx: Tx, user_id: str) -> list[JoinedMembership]:
    """The user's workspaces, personal first, then by name (as ``GET /api/workspaces``)."""
    rows = tx.conn.execute(
        select(workspaces, memberships.c.role, memberships.c.created_at.label("joined_at"))
        .join(memberships, memberships.c.workspace_id == workspaces.c.id)
        .where(memberships.c.user_id == user_id)
        .order_by(workspaces.c.is_personal.desc(), workspaces.c.name, workspaces.c.id)
    ).all()
    return [
        JoinedMembership(
            membership=Membership(
                workspace=Workspace(
                    id=r.id,
                    slug=r.slug,
                    name=r.name,
                    is_personal=r.is_personal,
                    created_at=r.created_at,
                ),
                role=Role(r.role),
            ),
            joined_at=r.joined_at,
        )
        for r in rows
    ]


def select_keys_created_by(tx: Tx, user_id: str) -> list[OwnKey]:
    """Every key the user created, in any workspace, oldest first.

    The secret hash is not selected at all, so it cannot leak into an export by mistake.
    """
    rows = tx.conn.execute(
        select(
            api_keys.c.id,
            api_keys.c.workspace_id,
            api_keys.c.created_by,
            api_keys.c.name,
            api_keys.c.prefix,
            api_keys.c.scopes,
            api_keys.c.created_at,
            api_keys.c.last_used_at,
            api_keys.c.revoked_at,
            workspaces.c.slug,
        )
        .join(workspaces, workspaces.c.id == api_keys.c.workspace_id)
        .where(api_keys.c.created_by == user_id)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    ).all()
    return [
        OwnKey(
            key=ApiKey(
                id=r.id,
                workspace_id=r.workspace_id,
                created_by=r.created_by,
                name=r.name,
                prefix=r.prefix,
                scopes=tuple(Scope(s) for s in r.scopes),
                created_at=r.created_at,
                last_used_at=r.last_used_at,
                revoked_at=r.revoked_at,
            ),
            workspace_slug=r.slug,
        )
        for r in rows
    ]


_RESOURCE_TYPES = {t.value: t for t in ResourceType}
_ACTIONS = {a.value: a for a in Action}
_SOURCE_KINDS = {k.value: k for k in SourceKind}
_COLUMNS = (
    events.c.seq,
    events.c.id,
    events.c.workspace_id,
    events.c.resource_type,
    events.c.action,
    events.c.resource_id,
    events.c.resource_name,
    events.c.description,
    events.c.actor_id,
    events.c.actor_name,
    events.c.actor_email,
    events.c.source_kind,
    events.c.source_key_prefix,
    events.c.created_at,
    events.c.recorded_at,
    events.c.metadata,
    events.c.private_to,
)


def _export_row(values: tuple[Any, ...]) -> Row:
    # Positional unpacking and dict lookups for the enums: at a million rows, named
    # attribute access on result rows and Enum() calls cost more than the query.
    (
        seq,
        id_,
        workspace_id,
        resource_type,
        action,
        resource_id,
        resource_name,
        description,
        actor_id,
        actor_name,
        actor_email,
        source_kind,
        source_key_prefix,
        created_at,
        recorded_at,
        metadata,
        private_to,
        is_seen,
        is_archived,
    ) = values
    return Row(
        event=Event(
            seq=seq,
            id=id_,
            workspace_id=workspace_id,
            resource_type=_RESOURCE_TYPES[resource_type],
            action=_ACTIONS[action],
            resource_id=resource_id,
            resource_name=resource_name,
            description=description,
            actor=(
                Actor(id=actor_id, name=actor_name or "", email=actor_email or "")
                if actor_id
                else None
            ),
            source=Source(kind=_SOURCE_KINDS[source_kind], api_key_prefix=source_key_prefix),
            created_at=created_at,
            recorded_at=recorded_at,
            metadata=metadata or {},
            private_to=private_to,
        ),
        is_seen=bool(is_seen),
        is_archived=bool(is_archived),
    )


def _page_by_arrival(
    tx: Tx, *, viewer_id: str, workspace_id: str, marks: Watermarks, after_seq: int, limit: int
) -> list[Row]:
    joined = events.outerjoin(
        event_states,
        and_(event_states.c.user_id == viewer_id, event_states.c.event_seq == events.c.seq),
    )
    stmt = (
        select(*_COLUMNS, seen_expr(marks), archived_expr(marks))
        .select_from(joined)
        .where(visible(viewer_id, workspace_id), events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [_export_row(tuple(r)) for r in tx.conn.execute(stmt)]


def iter_visible_by_arrival(
    tx: Tx, *, viewer_id: str, workspace_id: str, marks: Watermarks, chunk: int = 1000
) -> Iterator[list[Row]]:
    """Every event of the workspace the viewer can see (Inbox and Archive), oldest
    arrival first, as lists of at most ``chunk`` rows with the viewer's seen/archived
    state (the feed's rule: a per-event exception, else the watermark)."""
    after = 0
    while True:
        rows = _page_by_arrival(
            tx,
            viewer_id=viewer_id,
            workspace_id=workspace_id,
            marks=marks,
            after_seq=after,
            limit=chunk,
        )
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        after = rows[-1].event.seq

"""The reads of the personal-data export: memberships, keys a user made, events by arrival.

Every query here runs inside the caller's one read transaction, so the parts of an
export describe one snapshot. Events are read in keyset chunks over the arrival order
(``workspace_id``, ``seq``) from ``ux_events_arrival``, so memory does not grow with
history and no chunk costs more than the one before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import String, Text, and_, cast, select, type_coerce

from activityfeed.domain.accounts import ApiKey, Membership, Scope, Workspace
from activityfeed.domain.state import Watermarks
from activityfeed.domain.workspaces import Role
from activityfeed.store.db import Tx
from activityfeed.store.events import archived_expr, seen_expr, visible
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


#: The columns of an export line, in ``ExportRow`` order (then seen, archived).
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
)


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One event for the export, as stored: plain values rather than an ``Event``.

    At a million rows, parsing each row's metadata only to serialise it again, and
    building domain objects, cost more than the query: ``metadata_json`` is the stored
    JSON text (an object), ``created_at`` an aware UTC datetime, ``resource_type``,
    ``action`` and ``source_kind`` their wire values.
    """

    seq: int
    id: str
    workspace_id: str
    resource_type: str
    action: str
    resource_id: str
    resource_name: str
    description: str
    actor_id: str | None
    actor_name: str | None
    actor_email: str | None
    source_kind: str
    source_key_prefix: str | None
    created_at: datetime
    metadata_json: str
    is_seen: bool
    is_archived: bool


def _page_by_arrival(
    tx: Tx, *, viewer_id: str, workspace_id: str, marks: Watermarks, after_seq: int, limit: int
) -> list[ExportRow]:
    joined = events.outerjoin(
        event_states,
        and_(event_states.c.user_id == viewer_id, event_states.c.event_seq == events.c.seq),
    )
    is_pg = tx.dialect == "postgresql"
    # The stored text, not the JSON and datetime types' per-row processing: PostgreSQL
    # prints jsonb as text, SQLite's column already is text.
    metadata = cast(events.c.metadata, Text) if is_pg else type_coerce(events.c.metadata, Text)
    created = events.c.created_at if is_pg else type_coerce(events.c.created_at, String)
    stmt = (
        select(*_COLUMNS, created, metadata, seen_expr(marks), archived_expr(marks))
        .select_from(joined)
        .where(visible(viewer_id, workspace_id), events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    out = []
    for r in tx.conn.execute(stmt):
        # Positional: named attribute access on result rows costs at this scale.
        created_at = r[13]
        if not is_pg:
            # SQLite's fixed-width naive UTC text (see ``schema.UTCDateTime``).
            created_at = datetime.fromisoformat(created_at).replace(tzinfo=UTC)
        metadata_json = r[14] if r[14] not in (None, "null") else "{}"
        out.append(
            ExportRow(
                r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                created_at, metadata_json, bool(r[15]), bool(r[16]),
            )
        )  # fmt: skip
    return out


def iter_visible_by_arrival(
    tx: Tx, *, viewer_id: str, workspace_id: str, marks: Watermarks, chunk: int = 1000
) -> Iterator[list[ExportRow]]:
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
        after = rows[-1].seq

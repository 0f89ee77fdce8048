"""The reads of the personal-data export: memberships, keys a user made, events by arrival.

Every query here runs inside the caller's one read transaction, so the parts of an
export describe one snapshot. Events are read in keyset chunks over the arrival order
(``workspace_id``, ``seq``) from ``ux_events_arrival``, so memory does not grow with
history and no chunk costs more than the one before it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    select,
    tuple_,
    type_coerce,
)

from activityfeed.domain import chain
from activityfeed.domain.accounts import ApiKey, Membership, Scope, Workspace
from activityfeed.domain.state import Watermarks
from activityfeed.domain.workspaces import Role
from activityfeed.store.db import Tx
from activityfeed.store.events import DESCRIBED_COLUMNS, archived_expr, seen_expr, visible
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


#: The time text of the export's reads, on both databases: UTC, fixed width
#: (``2026-11-26 09:15:02.123456``). It is SQLite's stored text as it is (see
#: ``schema.UTCDateTime``) and what PostgreSQL prints for its ``timestamptz``, so the
#: export formats its times by slicing, without a ``datetime`` per row.
TIME_TEXT_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

#: One event for the export, as stored: a plain row (the driver's tuple or SQLAlchemy's
#: ``Row``) rather than an ``Event`` or a dataclass, because at a million rows building
#: objects cost as much as the query. Its columns, in order: ``seq``, ``id``,
#: ``workspace_id``, ``resource_type``, ``action``, ``resource_id``, ``resource_name``,
#: ``description``, ``actor_id``, ``actor_name``, ``actor_email``, ``source_kind``,
#: ``source_key_prefix`` (the wire values, as stored), ``created_at`` (time text, see
#: ``TIME_TEXT_FORMAT``), ``metadata`` (the stored JSON text of an object), and the
#: viewer's ``is_seen`` and ``is_archived`` (booleans, or 0/1 on SQLite).
ExportRow = Sequence[Any]

_COLUMNS = DESCRIBED_COLUMNS


def _time_text(tx: Tx, column: ColumnElement[Any]) -> ColumnElement[str]:
    if tx.dialect == "postgresql":
        # The database prints it (in C) instead of psycopg building a datetime per row.
        utc = func.timezone("UTC", column)
        return type_coerce(func.to_char(utc, "YYYY-MM-DD HH24:MI:SS.US"), String)
    return type_coerce(column, String)


def _json_text(tx: Tx, column: ColumnElement[Any]) -> ColumnElement[str]:
    # PostgreSQL prints jsonb as text; SQLite's column already is text. Either way no
    # JSON decoding per row.
    if tx.dialect == "postgresql":
        return cast(column, Text)
    return type_coerce(column, Text)


def _run(tx: Tx, stmt: Select[Any]) -> Sequence[Sequence[Any]]:
    # The rows as the driver gives them: every column is selected as a type with no
    # result processing, and SQLAlchemy's Row is a sequence like the driver's tuple.
    return tx.conn.execute(stmt).all()


def iter_visible_by_arrival(
    tx: Tx, *, viewer_id: str, workspace_id: str, marks: Watermarks, chunk: int = 1000
) -> Iterator[Sequence[ExportRow]]:
    """Every event of the workspace the viewer can see (Inbox and Archive), oldest
    arrival first, in lists of at most ``chunk`` rows (see ``ExportRow``) with the
    viewer's seen/archived state (the feed's rule: a per-event exception, else the
    watermark)."""
    joined = events.outerjoin(
        event_states,
        and_(event_states.c.user_id == viewer_id, event_states.c.event_seq == events.c.seq),
    )
    after = bindparam("after_seq", type_=events.c.seq.type)
    stmt = (
        select(
            *_COLUMNS,
            _time_text(tx, events.c.created_at),
            _json_text(tx, events.c.metadata),
            seen_expr(marks),
            archived_expr(marks),
        )
        .select_from(joined)
        .where(visible(viewer_id, workspace_id), events.c.seq > after)
        .order_by(events.c.seq)
        .limit(chunk)
    )
    last = 0
    while True:
        rows = _run(tx, stmt.params(after_seq=last))
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        last = rows[-1][0]


#: ``iter_chain_rows``'s columns: ``chain.FIELDS`` with both times as time text and the
#: metadata as its stored JSON text.
_CHAIN_TEXT = frozenset({"created_at", "recorded_at", "metadata"})
_CREATED, _RECORDED, _METADATA = (
    chain.FIELDS.index(n) for n in ("created_at", "recorded_at", "metadata")
)
_ORD, _SEQ = chain.FIELDS.index("ws_ord"), chain.FIELDS.index("seq")


def iter_chain_rows(tx: Tx, workspace_id: str, *, chunk: int = 5000) -> Iterator[Sequence[Any]]:
    """Every stored event of the workspace by ``(ws_ord, seq)`` (duplicated positions
    included, as ``store.chain.iter_stored`` reads them), in lists of at most ``chunk``
    rows of values in ``chain.FIELDS`` order, except that ``created_at`` and
    ``recorded_at`` are time text (``TIME_TEXT_FORMAT``) and ``metadata`` the stored
    JSON text. ``chain_values`` turns a row into ``iter_stored``'s values."""
    columns = [
        _json_text(tx, events.c[name])
        if name == "metadata"
        else _time_text(tx, events.c[name])
        if name in _CHAIN_TEXT
        else events.c[name]
        for name in chain.FIELDS
    ]
    after_ord = bindparam("after_ord", type_=events.c.ws_ord.type)
    after_seq = bindparam("after_seq", type_=events.c.seq.type)
    stmt = (
        select(*columns)
        .where(
            events.c.workspace_id == workspace_id,
            tuple_(events.c.ws_ord, events.c.seq) > tuple_(after_ord, after_seq),
        )
        .order_by(events.c.ws_ord, events.c.seq)
        .limit(chunk)
    )
    last = (-(2**62), 0)
    while True:
        rows = _run(tx, stmt.params(after_ord=last[0], after_seq=last[1]))
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        last = (rows[-1][_ORD], rows[-1][_SEQ])


def parse_time_text(text: str) -> datetime:
    """An aware UTC datetime from time text (``TIME_TEXT_FORMAT``)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def chain_values(row: Sequence[Any]) -> tuple[Any, ...]:
    """A row of ``iter_chain_rows`` as ``store.chain.iter_stored`` gives it (what
    ``chain.leaf`` takes): times parsed, metadata decoded."""
    values = list(row)
    values[_CREATED] = parse_time_text(row[_CREATED])
    values[_RECORDED] = parse_time_text(row[_RECORDED])
    metadata = row[_METADATA]
    values[_METADATA] = None if metadata is None else json.loads(metadata)
    return tuple(values)

"""The activity routes of the seed: list (and export), mark seen, archive/restore.

Browser session only: an API key gets 401 ``browser_session_required``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.responses import Response, StreamingResponse

from activityfeed.domain.accounts import Membership, Session
from activityfeed.domain.events import Action, ResourceType
from activityfeed.domain.query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_PAGE,
    MAX_SEARCH,
    TRUE_VALUES,
    ActivityQuery,
    parse_activity_query,
)
from activityfeed.errors import InvalidRequest
from activityfeed.services import activity, workspaces
from activityfeed.store.db import Tx
from activityfeed.web import auth_policy
from activityfeed.web.deps import Ctx, SessionLookup, ctx, session_auth, session_in_handler
from activityfeed.web.openapi import success
from activityfeed.web.responses import json_response
from activityfeed.web.schemas import (
    ActivityExport,
    ActivityPage,
    ArchiveRequest,
    ArchiveResponse,
    MarkSeenRequest,
    MarkSeenResponse,
    event_public,
    iso,
)

router = auth_policy.router(prefix="/api/activity", tags=["activity"])


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


_INSTANT = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]
}
OWNER = _param("owner", {"type": "string"}, "A workspace slug (default: the active workspace).")
# The list reads its parameters itself (``parse_activity_query``: repeated and
# comma-separated filters, aliases), so the document lists them here.
LIST_PARAMETERS = [
    _param("archived", {"type": "boolean", "default": False}, "The Archive instead of the Inbox."),
    _param("search", {"type": "string", "maxLength": MAX_SEARCH}, "Case-insensitive text."),
    _param("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}, "Page."),
    _param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Events per page.",
    ),
    _param("start", _INSTANT, "From (inclusive); default 30 days ago. Alias: from."),
    _param("end", _INSTANT, "Until; a date-only end includes that day. Alias: to."),
    _param("from", _INSTANT, "Alias of start."),
    _param("to", _INSTANT, "Alias of end."),
    _param(
        "resourceType",
        {"type": "array", "items": {"type": "string", "enum": [t.value for t in ResourceType]}},
        "Only these types (repeatable, or comma-separated).",
    ),
    _param(
        "action",
        {"type": "array", "items": {"type": "string", "enum": [a.value for a in Action]}},
        "Only these actions (repeatable, or comma-separated).",
    ),
    OWNER,
    _param("cursor", {"type": "string"}, "The previous page's nextCursor (instead of page)."),
    _param("export", {"type": "boolean", "default": False}, "Every match, as a JSON download."),
]


def _owner(request: Request) -> str | None:
    values = request.query_params.getlist("owner")
    return values[-1].strip() or None if values else None


@router.get(
    "",
    response_model=None,
    # A page; with export=true the download (its own shape, so never mistaken for a page).
    responses=success(ActivityPage | ActivityExport, description="A page, or the export."),
    openapi_extra={"parameters": LIST_PARAMETERS},
)
async def list_activity(
    request: Request, lookup: SessionLookup = Depends(session_in_handler)
) -> Response:
    """The feed: Inbox (or Archive with ``archived=true``), newest first; see docs/api.md."""
    response, session = await anyio.to_thread.run_sync(
        _list, request, lookup, limiter=_pool_for(request)
    )
    if lookup.is_touch_due(session):
        # A write, which on SQLite may wait for the lock: on the default pool, never
        # holding one of the readers' threads.
        await anyio.to_thread.run_sync(lookup.touch, session)
    return response


#: Threads per process that serve feed reads. A page is mostly Python under the GIL, and
#: SQLite's WAL and PostgreSQL's snapshots never make a read wait for a lock: with 16
#: connections, 4 threads per worker served 1,080 pages/s at p99 37 ms, and the default
#: pool (one thread per waiting request) 720 pages/s at p99 75 ms, the threads taking
#: the GIL from each other. Writes keep the default pool: on SQLite they can wait for
#: the write lock, and must not hold up reads while they do; so do searches and
#: exports, which can take seconds (``_pool_for``).
FEED_READ_THREADS = 4


def _pool_for(request: Request) -> anyio.CapacityLimiter | None:
    """The readers' pool for pages; the default pool (None) for a text search or an
    export, which can take seconds of database time: on the small pool they would hold
    the threads that every plain page waits for (a PostgreSQL soak's pages queued
    behind its searches, p50 1 s)."""
    query = request.query_params
    if query.get("search") or query.get("export", "").lower() in TRUE_VALUES:
        return None
    return _feed_reads(request)


def _feed_reads(request: Request) -> anyio.CapacityLimiter:
    # Made on first use, inside the event loop (one per app and process).
    state = request.app.state
    limiter: anyio.CapacityLimiter | None = getattr(state, "feed_reads", None)
    if limiter is None:
        limiter = state.feed_reads = anyio.CapacityLimiter(FEED_READ_THREADS)
    return limiter


def _list(request: Request, lookup: SessionLookup) -> tuple[Response, Session]:
    # The hottest route, in one thread-pool call on its own small pool: the session is
    # read in the page's own transaction (``SessionLookup``), ``ctx`` is called here
    # rather than as a dependency (a sync dependency is one more thread-pool hop), and
    # the body is plain JSON types encoded by pydantic-core (no ``jsonable_encoder``).
    c = ctx(request)
    now = c.now()
    window = timedelta(seconds=c.settings.undo_window_seconds)
    sealer = c.sealer

    def read(tx: Tx) -> tuple[Session, ActivityQuery, Membership, activity.ActivityPage | None]:
        session, active, marks_and_head = lookup.within_workspace(tx)
        params: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            params.setdefault(name, []).append(value)
        q = parse_activity_query(params, now=now, open_cursor=sealer.open_cursor)
        membership = workspaces.active_workspace(tx, session, q.owner, known=active)
        if q.is_export:
            return session, q, membership, None
        if active is None or membership.workspace.id != active.workspace.id:
            marks_and_head = None  # another workspace (``owner``): read its own
        page = activity.list_activity(
            tx,
            viewer_id=session.user.id,
            membership=membership,
            q=q,
            now=now,
            undo_window=window,
            marks_and_head=marks_and_head,
        )
        return session, q, membership, page

    # Without the pool's ping: a page on a connection the server dropped is read again.
    session, q, membership, page = c.db.read_retrying(read)
    if page is not None:
        body = {
            "events": [event_public(v) for v in page.events],
            "page": page.page,
            "limit": page.limit,
            "total": page.total,
            "unseenCount": page.unseen_count,
            "nextCursor": sealer.seal_cursor(page.next_cursor) if page.next_cursor else None,
        }
        return json_response(body), session

    def stream() -> Iterator[bytes]:
        head = {
            "exportedAt": iso(now),
            "owner": membership.workspace.slug,
            "filters": q.filters(),
        }
        first = True
        with c.db.read() as tx:
            # The rows come from this transaction, not the check's above: check again in
            # it, so that a member removed in between gets a 404, not what came after.
            workspaces.access_workspace(
                tx, user_id=session.user.id, workspace_id=membership.workspace.id
            )
            yield (json.dumps(head)[:-1] + ', "activity": [').encode()
            batch: list[str] = []
            for view in activity.export_activity(
                tx,
                viewer_id=session.user.id,
                membership=membership,
                q=q,
                now=now,
                undo_window=window,
            ):
                batch.append(json.dumps(event_public(view)))
                if len(batch) >= 500:
                    yield ((", " if not first else "") + ", ".join(batch)).encode()
                    first, batch = False, []
            if batch:
                yield ((", " if not first else "") + ", ".join(batch)).encode()
        yield b"]}\n"

    filename = f"activity-{membership.workspace.slug}-{now.date().isoformat()}.json"
    chunks = stream()
    # Its first chunk here, before the answer starts: the access check in the export's
    # own transaction can still answer 404.
    opening = next(chunks)
    download = StreamingResponse(
        itertools.chain([opening], chunks),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
    return download, session


def _ids_or_all(ids: list[str] | None, all_: bool | None) -> None:
    if not all_ and ids is None:
        raise InvalidRequest("Give 'eventIds' or 'all': true.", field="eventIds")


@router.post(
    "/mark-seen",
    response_model=None,
    responses=success(MarkSeenResponse),
    openapi_extra={"parameters": [OWNER]},
)
def mark_seen(
    body: MarkSeenRequest,
    request: Request,
    session: Session = Depends(session_auth),
    c: Ctx = Depends(ctx),
) -> dict[str, Any]:
    _ids_or_all(body.event_ids, body.all)
    with c.db.write() as tx:
        membership = workspaces.active_workspace(tx, session, _owner(request))
        unseen = activity.mark_seen(
            tx,
            viewer_id=session.user.id,
            membership=membership,
            event_ids=body.event_ids,
            mark_all=bool(body.all),
        )
    return {"success": True, "unseenCount": unseen}


@router.post(
    "/archive",
    response_model=None,
    responses=success(ArchiveResponse),
    openapi_extra={"parameters": [OWNER]},
)
def archive(
    body: ArchiveRequest,
    request: Request,
    session: Session = Depends(session_auth),
    c: Ctx = Depends(ctx),
) -> dict[str, Any]:
    _ids_or_all(body.event_ids, body.all)
    with c.db.write() as tx:
        membership = workspaces.active_workspace(tx, session, _owner(request))
        updated = activity.archive_events(
            tx,
            viewer_id=session.user.id,
            membership=membership,
            event_ids=body.event_ids,
            archive_all=bool(body.all),
            archive=body.archive,
        )
    return {"success": True, "updated": updated}

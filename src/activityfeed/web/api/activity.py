"""The activity routes of the seed: list (and export), mark seen, archive/restore.

Browser session only: an API key gets 401 ``browser_session_required``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from activityfeed.domain.accounts import Session
from activityfeed.domain.query import parse_activity_query
from activityfeed.errors import InvalidRequest
from activityfeed.services import activity, workspaces
from activityfeed.web import auth_policy
from activityfeed.web.deps import Ctx, ctx, session_auth
from activityfeed.web.schemas import ArchiveRequest, MarkSeenRequest, event_public, iso

router = auth_policy.router(prefix="/api/activity", tags=["activity"])


def _owner(request: Request) -> str | None:
    values = request.query_params.getlist("owner")
    return values[-1].strip() or None if values else None


@router.get("", response_model=None)
def list_activity(
    request: Request, session: Session = Depends(session_auth)
) -> JSONResponse | StreamingResponse:
    """The feed: Inbox (or Archive with ``archived=true``), newest first; see docs/api.md."""
    # The hottest route: ``ctx`` is called here rather than as a dependency (a sync
    # dependency is one more thread-pool hop per request).
    c = ctx(request)
    now = c.now()
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    q = parse_activity_query(params, now=now)
    window = timedelta(seconds=c.settings.undo_window_seconds)
    with c.db.read() as tx:
        membership = workspaces.active_workspace(tx, session, q.owner)
        if not q.is_export:
            page = activity.list_activity(
                tx,
                viewer_id=session.user.id,
                membership=membership,
                q=q,
                now=now,
                undo_window=window,
            )
            # The body is plain JSON types already: a JSONResponse skips FastAPI's
            # jsonable_encoder walk over every field of every event (same bytes).
            return JSONResponse(
                {
                    "events": [event_public(v) for v in page.events],
                    "page": page.page,
                    "limit": page.limit,
                    "total": page.total,
                    "unseenCount": page.unseen_count,
                    "nextCursor": page.next_cursor,
                }
            )

    def stream() -> Iterator[bytes]:
        head = {
            "exportedAt": iso(now),
            "owner": membership.workspace.slug,
            "filters": q.filters(),
        }
        yield (json.dumps(head)[:-1] + ', "activity": [').encode()
        first = True
        with c.db.read() as tx:
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
    return StreamingResponse(
        stream(),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _ids_or_all(ids: list[str] | None, all_: bool | None) -> None:
    if not all_ and ids is None:
        raise InvalidRequest("Give 'eventIds' or 'all': true.", field="eventIds")


@router.post("/mark-seen")
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


@router.post("/archive")
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

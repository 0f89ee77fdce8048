"""``GET /api/activity/stream``: Server-Sent Events for the session's active workspace.

Browser session only. The wire contract (message types, ids, replay) is in
docs/api.md; the fan-out behind it is ``web/sse.py``.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse

from activityfeed.domain.accounts import Session
from activityfeed.web import auth_policy
from activityfeed.web.deps import session_auth
from activityfeed.web.openapi import errors, not_json
from activityfeed.web.sse import Broker

router = auth_policy.router(prefix="/api/activity", tags=["activity"])


def _last_event_id(request: Request) -> str | None:
    # EventSource cannot set headers on its first connection, so the page passes its
    # position in the query; on reconnects the browser sends the header, which wins.
    # An empty id is no id (a new stream starts now, without a reset).
    return request.headers.get("last-event-id") or request.query_params.get("lastEventId") or None


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses=not_json(
        "text/event-stream",
        "Server-Sent Events until the session or the membership ends (docs/api.md).",
        {"type": "string"},
    )
    | errors(429),
)
async def stream(request: Request, session: Session = Depends(session_auth)) -> StreamingResponse:
    """New events, the user's state changes and unseen counts, as they happen."""
    broker: Broker = request.app.state.broker
    client = await broker.prepare(
        user_id=session.user.id,
        workspace_id=session.workspace_id,
        last_event_id=_last_event_id(request),
        # The stream ends when this session does (logout, password change, timeouts).
        session_hash=session.id_hash,
    )
    return broker.response(
        client,
        headers={
            "Cache-Control": "no-cache, no-store",
            # Proxies (nginx) must pass each message on at once, not buffer the body.
            "X-Accel-Buffering": "no",
        },
    )

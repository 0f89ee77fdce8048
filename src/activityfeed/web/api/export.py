"""``GET /api/settings/profile/export``: the signed-in user's personal-data export (a ZIP).

Browser session only (a GET, so no CSRF token): an API key gets 401
``browser_session_required``. The ZIP is streamed as it is written; see docs/export.md.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends
from fastapi.responses import StreamingResponse

from activityfeed.domain.accounts import Session
from activityfeed.services import export
from activityfeed.web import auth_policy
from activityfeed.web.deps import Ctx, ctx, session_auth
from activityfeed.web.openapi import not_json

router = auth_policy.router(prefix="/api/settings/profile", tags=["settings"])


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses=not_json(
        "application/zip",
        "The archive (docs/export.md), as a download.",
        {"type": "string", "format": "binary"},
    ),
)
def export_profile(
    session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> StreamingResponse:
    """Everything about the caller in one ZIP: profile, workspaces, keys, resources, events."""
    now = c.now()

    # A sync generator: Starlette pulls it in the threadpool, so the database work never
    # runs on the event loop. The read transaction is opened on the first pull and held
    # until the last byte, so every part describes one snapshot.
    def stream() -> Iterator[bytes]:
        with c.db.read() as tx:
            yield from export.export_archive(tx, user_id=session.user.id, now=now)

    filename = f"activityfeed-export-{now.date().isoformat()}.zip"
    return StreamingResponse(
        stream(),
        media_type="application/zip",
        # SecurityHeaders adds Cache-Control: no-store, as on every /api/ response.
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )

"""Settings: read and change the profile; undo a settings change from the activity feed.

Browser session only (an API key gets 401 ``browser_session_required``), CSRF-checked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import Depends

from activityfeed.domain.accounts import Session
from activityfeed.domain.events import SourceKind
from activityfeed.services import settings
from activityfeed.web import auth_policy
from activityfeed.web.deps import Ctx, ctx, session_auth
from activityfeed.web.openapi import errors, success
from activityfeed.web.schemas import (
    EventResponse,
    ProfileChanged,
    ProfileResponse,
    ProfileUpdate,
    event_public,
    profile_public,
)

router = auth_policy.router(tags=["settings"])


def undo_window(c: Ctx) -> timedelta:
    return timedelta(seconds=c.settings.undo_window_seconds)


@router.get("/api/settings/profile", response_model=None, responses=success(ProfileResponse))
def get_profile(session: Session = Depends(session_auth), c: Ctx = Depends(ctx)) -> dict[str, Any]:
    with c.db.read() as tx:
        profile = settings.get_profile(tx, user_id=session.user.id)
    return {"profile": profile_public(profile)}


@router.patch("/api/settings/profile", response_model=None, responses=success(ProfileChanged))
def update_profile(
    body: ProfileUpdate, session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    """Change the fields given; ``event`` is the one settings event, or null if nothing changed."""
    patch = body.to_patch()
    with c.db.write() as tx:
        change = settings.update_profile(
            tx,
            user=session.user,
            patch=patch,
            source=SourceKind.UI,
            now=c.now(),
            undo_window=undo_window(c),
        )
    return {
        "profile": profile_public(change.profile),
        "event": event_public(change.event) if change.event else None,
    }


@router.post(
    "/api/activity/{event_id}/undo",
    response_model=None,
    responses=success(EventResponse, description="Undone; the revert's own event.") | errors(409),
)
def undo(
    event_id: str, session: Session = Depends(session_auth), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    """Revert one of the caller's settings changes; the answer is the revert's own event."""
    with c.db.write() as tx:
        view = settings.undo_settings_change(
            tx,
            user=session.user,
            event_id=event_id,
            source=SourceKind.UI,
            now=c.now(),
            undo_window=undo_window(c),
        )
    return {"event": event_public(view)}

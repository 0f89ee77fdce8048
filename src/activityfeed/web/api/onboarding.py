"""Onboarding: ``POST /api/onboarding/complete`` records the onboarding event once.

Both the first call and every repeat answer 200 with
``{"completedAt", "alreadyCompleted", "event"}``: ``event`` is always the one onboarding
event (the original on a repeat), so a retried request is harmless.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import Depends

from activityfeed.domain.accounts import Session
from activityfeed.domain.events import SourceKind
from activityfeed.services import onboarding
from activityfeed.web import auth_policy
from activityfeed.web.deps import Ctx, ctx, session_auth
from activityfeed.web.openapi import success
from activityfeed.web.schemas import OnboardingResponse, event_public, iso

router = auth_policy.router(prefix="/api/onboarding", tags=["onboarding"])


@router.post("/complete", response_model=None, responses=success(OnboardingResponse))
def complete(session: Session = Depends(session_auth), c: Ctx = Depends(ctx)) -> dict[str, Any]:
    with c.db.write() as tx:
        done = onboarding.complete_onboarding(
            tx,
            user=session.user,
            source=SourceKind.UI,
            now=c.now(),
            undo_window=timedelta(seconds=c.settings.undo_window_seconds),
        )
    return {
        "completedAt": iso(done.completed_at),
        "alreadyCompleted": not done.is_new,
        "event": event_public(done.event) if done.event else None,
    }

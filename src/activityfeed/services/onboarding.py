"""Onboarding: completing it records the ``onboarding`` ``completed`` event, once per user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from activityfeed.domain.accounts import User
from activityfeed.domain.events import (
    Action,
    Actor,
    EventDraft,
    EventView,
    ResourceType,
    Source,
    SourceKind,
)
from activityfeed.services.activity import view_events
from activityfeed.services.events import record_event
from activityfeed.services.settings import lock_profile, personal_workspace_id
from activityfeed.store import profiles as store
from activityfeed.store.db import Tx


@dataclass(frozen=True, slots=True)
class Onboarding:
    completed_at: datetime
    #: The one ``onboarding`` event (None only if the viewer can no longer see it).
    event: EventView | None
    #: True when this call completed onboarding; False for a repeat.
    is_new: bool


def complete_onboarding(
    tx: Tx, *, user: User, source: SourceKind, now: datetime, undo_window: timedelta
) -> Onboarding:
    """Mark the user's onboarding complete and record its event the first time only.

    A repeat records nothing and returns the first completion and its event. Two
    concurrent calls are serialised on the profile row, so there is only ever one event.
    """
    row = lock_profile(tx, user_id=user.id, now=now)
    if row.onboarded_at is not None:
        views = (
            view_events(
                tx,
                viewer_id=user.id,
                workspace_id=personal_workspace_id(tx, user.id),
                event_ids=[row.onboarding_event_id],
                now=now,
                undo_window=undo_window,
            )
            if row.onboarding_event_id
            else []
        )
        return Onboarding(
            completed_at=row.onboarded_at, event=next(iter(views), None), is_new=False
        )
    workspace_id = personal_workspace_id(tx, user.id)
    event = record_event(
        tx,
        EventDraft(
            workspace_id=workspace_id,
            resource_type=ResourceType.ONBOARDING,
            action=Action.COMPLETED,
            resource_id=user.id,
            resource_name="onboarding",
            actor=Actor(id=user.id, name=user.name, email=user.email),
            source=Source(kind=source),
        ),
        now=now,
    )
    store.update_onboarding(tx, user.id, at=now, event_id=event.id)
    (view,) = view_events(
        tx,
        viewer_id=user.id,
        workspace_id=workspace_id,
        event_ids=[event.id],
        now=now,
        undo_window=undo_window,
    )
    return Onboarding(completed_at=now, event=view, is_new=True)

"""Settings: read and change the profile, and undo a change (``undo_settings_change``).

Every change records one ``settings`` ``updated`` event in the actor's personal workspace
(private to the actor) whose ``metadata.changes`` holds each changed field's ``before``
and ``after``; undo replays it backwards. Changes and undos of one user are serialised
on the user's profile row, so "has this field changed since?" and the write that follows
cannot interleave with another tab's edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from activityfeed.domain import profiles as p
from activityfeed.domain.accounts import User
from activityfeed.domain.events import (
    Action,
    Actor,
    Event,
    EventDraft,
    EventView,
    ResourceType,
    Source,
    SourceKind,
)
from activityfeed.domain.profiles import Profile
from activityfeed.errors import AlreadyUndone, NotFound, UndoConflict, UndoExpired, UndoNotSupported
from activityfeed.services.activity import view_events
from activityfeed.services.events import record_event
from activityfeed.store import accounts as account_store
from activityfeed.store import events as event_store
from activityfeed.store import profiles as store
from activityfeed.store.db import Tx

#: Longer path ids cannot be ours; they are refused without a query.
MAX_EVENT_ID_LENGTH = 128
PROFILE_RESOURCE_NAME = "profile"


@dataclass(frozen=True, slots=True)
class ProfileChange:
    """The profile after a change, and the event it recorded (None when nothing changed)."""

    profile: Profile
    event: EventView | None


def get_profile(tx: Tx, *, user_id: str) -> Profile:
    """The user's profile; a user who never saved one gets the defaults."""
    row = store.select_profile(tx, user_id)
    if row is not None:
        return row.profile
    user = account_store.select_user(tx, user_id)
    if user is None:
        raise NotFound("No such user.")
    return Profile(
        user_id=user.id, email=user.email, values={p.NAME: user.name, **p.DEFAULTS}, updated_at=None
    )


def lock_profile(tx: Tx, *, user_id: str, now: datetime) -> store.ProfileRow:
    """The user's profile row, created if need be and locked to the end of the transaction."""
    store.ensure_profile(tx, user_id, now=now)
    row = store.select_profile(tx, user_id, for_update=True)
    assert row is not None  # ensure_profile just made sure of it
    return row


def personal_workspace_id(tx: Tx, user_id: str) -> str:
    ws = account_store.select_personal_workspace(tx, user_id)
    if ws is None:
        raise NotFound("This account has no personal workspace.")
    return ws.id


def _record(
    tx: Tx,
    *,
    user: User,
    workspace_id: str,
    metadata: dict[str, Any],
    description: str,
    source: SourceKind,
    now: datetime,
) -> Event:
    return record_event(
        tx,
        EventDraft(
            workspace_id=workspace_id,
            resource_type=ResourceType.SETTINGS,
            action=Action.UPDATED,
            resource_id=user.id,
            resource_name=PROFILE_RESOURCE_NAME,
            actor=Actor(id=user.id, name=user.name, email=user.email),
            source=Source(kind=source),
            description=description,
            metadata=metadata,
        ),
        now=now,
    )


def _view(tx: Tx, user: User, event: Event, *, now: datetime, undo_window: timedelta) -> EventView:
    (view,) = view_events(
        tx,
        viewer_id=user.id,
        workspace_id=event.workspace_id,
        event_ids=[event.id],
        now=now,
        undo_window=undo_window,
    )
    return view


def update_profile(
    tx: Tx,
    *,
    user: User,
    patch: Mapping[str, Any],
    source: SourceKind,
    now: datetime,
    undo_window: timedelta,
) -> ProfileChange:
    """Apply ``patch`` (field key -> new value) and record its one ``settings`` event.

    Raises ``InvalidRequest`` naming the first bad field (and changes nothing). A patch
    that changes no value records no event.
    """
    row = lock_profile(tx, user_id=user.id, now=now)
    changes = p.diff(row.profile.values, patch)
    if not changes:
        return ProfileChange(profile=row.profile, event=None)
    event = _record(
        tx,
        user=user,
        workspace_id=personal_workspace_id(tx, user.id),
        metadata={"changes": changes},
        description=p.describe_change(changes),
        source=source,
        now=now,
    )
    store.update_profile(
        tx,
        user.id,
        values={k: c["after"] for k, c in changes.items()},
        last_changes={**row.last_changes, **dict.fromkeys(changes, event.id)},
        now=now,
    )
    return ProfileChange(
        profile=get_profile(tx, user_id=user.id),
        event=_view(tx, user, event, now=now, undo_window=undo_window),
    )


def undo_settings_change(
    tx: Tx,
    *,
    user: User,
    event_id: str,
    source: SourceKind,
    now: datetime,
    undo_window: timedelta,
) -> EventView:
    """Revert the caller's settings change ``event_id`` and record the revert as an event.

    The new event's metadata holds the reverted ``changes`` and ``undoOf``. Raises
    ``NotFound`` for an unknown id, one the caller cannot see, and another user's event
    (even a visible one), ``UndoNotSupported`` for any other kind of event, ``AlreadyUndone``,
    ``UndoExpired`` after the window, and ``UndoConflict`` when a field it changed has
    been changed again since (nothing is overwritten).
    """
    event = (
        event_store.select_event(tx, viewer_id=user.id, workspace_id=None, event_id=event_id)
        if len(event_id) <= MAX_EVENT_ID_LENGTH
        else None
    )
    if (
        event is None
        or (event.actor is not None and event.actor.id != user.id)
        or account_store.select_membership(tx, user_id=user.id, workspace_id=event.workspace_id)
        is None
    ):
        # Another user's event, even one the caller sees in a team, is "not yours"
        # (PRODUCT.md: 404), like an unknown or foreign id.
        raise NotFound("No event of yours has that id.")
    changes = p.undoable_changes(event.metadata)
    if (
        event.resource_type is not ResourceType.SETTINGS
        or event.action is not Action.UPDATED
        or event.actor is None
        or changes is None
    ):
        raise UndoNotSupported()
    # The lock comes before the checks: a concurrent undo of the same event waits here
    # and then finds the first one's undo record.
    row = lock_profile(tx, user_id=user.id, now=now)
    if store.select_undone(tx, [event.id]):
        raise AlreadyUndone()
    if now >= p.undo_deadline(event.created_at, undo_window):
        raise UndoExpired()
    changed_since = [k for k in p.FIELDS if k in changes and row.last_changes.get(k) != event.id]
    if changed_since:
        raise UndoConflict([p.LABELS[k] for k in changed_since])
    reverted = p.reverse(changes)
    undo = _record(
        tx,
        user=user,
        workspace_id=event.workspace_id,
        metadata={"changes": reverted, "undoOf": event.id},
        description=p.describe_change(reverted, is_undo=True),
        source=source,
        now=now,
    )
    store.update_profile(
        tx,
        user.id,
        values={k: c["after"] for k, c in reverted.items()},
        last_changes={**row.last_changes, **dict.fromkeys(reverted, undo.id)},
        now=now,
    )
    store.insert_undo(tx, event_id=event.id, undo_event_id=undo.id, user_id=user.id, undone_at=now)
    return _view(tx, user, undo, now=now, undo_window=undo_window)

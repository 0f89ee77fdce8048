"""Profiles (with the name from ``users``), undo records and onboarding completion."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from activityfeed.domain import profiles as p
from activityfeed.domain.profiles import Profile
from activityfeed.store.db import Tx
from activityfeed.store.schema import profiles, undos, users

#: Field key -> column of ``profiles`` (the name is ``users.name``).
_COLUMNS = {
    p.BIO: "bio",
    p.COMPANY: "company",
    p.TIMEZONE: "timezone",
    p.TRAINING_FAILURES: "training_failures",
    p.WEEKLY_DIGEST: "weekly_digest",
    p.EMAIL_DIGEST: "email_digest",
}


@dataclass(frozen=True, slots=True)
class ProfileRow:
    profile: Profile
    #: Field key -> id of the event that last changed it.
    last_changes: dict[str, str]
    onboarded_at: datetime | None
    onboarding_event_id: str | None


def ensure_profile(tx: Tx, user_id: str, *, now: datetime) -> None:
    """Create the user's profile row with the defaults unless it exists (race-free)."""
    values = {
        "user_id": user_id,
        **{_COLUMNS[k]: v for k, v in p.DEFAULTS.items()},
        "last_changes": {},
        "created_at": now,
    }
    stmt = (
        pg_insert(profiles).values(values).on_conflict_do_nothing(index_elements=["user_id"])
        if tx.dialect == "postgresql"
        else sqlite_insert(profiles).values(values).on_conflict_do_nothing()
    )
    tx.conn.execute(stmt)


def select_profile(tx: Tx, user_id: str, *, for_update: bool = False) -> ProfileRow | None:
    """The profile row with the user's name and e-mail, or None when none exists yet.

    ``for_update`` locks the row to the end of the transaction (PostgreSQL; SQLite
    writers are serialised already): every change of a profile, and every undo, takes
    this lock first, so the "has it changed since?" check and the write cannot interleave.
    """
    stmt = (
        select(profiles, users.c.name, users.c.email)
        .join(users, users.c.id == profiles.c.user_id)
        .where(profiles.c.user_id == user_id)
    )
    if for_update and tx.dialect == "postgresql":
        stmt = stmt.with_for_update(of=profiles)
    row = tx.conn.execute(stmt).first()
    if row is None:
        return None
    values: dict[str, Any] = {p.NAME: row.name}
    values.update({key: getattr(row, column) for key, column in _COLUMNS.items()})
    return ProfileRow(
        profile=Profile(
            user_id=row.user_id, email=row.email, values=values, updated_at=row.updated_at
        ),
        last_changes=dict(row.last_changes or {}),
        onboarded_at=row.onboarded_at,
        onboarding_event_id=row.onboarding_event_id,
    )


def update_profile(
    tx: Tx,
    user_id: str,
    *,
    values: Mapping[str, Any],
    last_changes: Mapping[str, str],
    now: datetime,
) -> None:
    """Write the given field values (``name`` goes to ``users``) and the change record."""
    if p.NAME in values:
        tx.conn.execute(update(users).where(users.c.id == user_id).values(name=values[p.NAME]))
    columns = {_COLUMNS[k]: v for k, v in values.items() if k in _COLUMNS}
    tx.conn.execute(
        update(profiles)
        .where(profiles.c.user_id == user_id)
        .values(**columns, last_changes=dict(last_changes), updated_at=now)
    )


def update_onboarding(tx: Tx, user_id: str, *, at: datetime, event_id: str) -> None:
    tx.conn.execute(
        update(profiles)
        .where(profiles.c.user_id == user_id)
        .values(onboarded_at=at, onboarding_event_id=event_id)
    )


def insert_undo(
    tx: Tx, *, event_id: str, undo_event_id: str, user_id: str, undone_at: datetime
) -> None:
    """Mark ``event_id`` undone; the primary key refuses a second undo of one event."""
    tx.conn.execute(
        insert(undos).values(
            event_id=event_id, undo_event_id=undo_event_id, user_id=user_id, undone_at=undone_at
        )
    )


def select_undone(tx: Tx, event_ids: Iterable[str]) -> set[str]:
    """Which of ``event_ids`` have been undone (one query for a page of events)."""
    wanted = list(set(event_ids))
    if not wanted:
        return set()
    return set(
        tx.conn.execute(select(undos.c.event_id).where(undos.c.event_id.in_(wanted))).scalars()
    )

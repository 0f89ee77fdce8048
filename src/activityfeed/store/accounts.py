"""Users, workspaces, memberships, sessions and login failures."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update

from activityfeed.domain.accounts import Membership, Session, User, Workspace
from activityfeed.domain.workspaces import Role
from activityfeed.store.db import Tx
from activityfeed.store.schema import login_failures, memberships, sessions, users, workspaces


def _user(row: Any) -> User:
    return User(id=row.id, email=row.email, name=row.name, created_at=row.created_at)


def _workspace(row: Any, prefix: str = "") -> Workspace:
    """The workspace in ``row``'s columns (named ``prefix`` + field, when the row joins
    it to a table with columns of the same names)."""
    return Workspace(
        id=getattr(row, prefix + "id"),
        slug=getattr(row, prefix + "slug"),
        name=getattr(row, prefix + "name"),
        is_personal=getattr(row, prefix + "is_personal"),
        created_at=getattr(row, prefix + "created_at"),
    )


def insert_user(tx: Tx, *, user: User, password_hash: str) -> None:
    tx.conn.execute(
        insert(users).values(
            id=user.id,
            email=user.email,
            name=user.name,
            password_hash=password_hash,
            created_at=user.created_at,
        )
    )


def select_user_by_email(tx: Tx, email: str) -> tuple[User, str] | None:
    """The user with this (already lower-cased) e-mail and their password hash."""
    row = tx.conn.execute(select(users).where(users.c.email == email)).first()
    return (_user(row), row.password_hash) if row else None


def select_user(tx: Tx, user_id: str) -> User | None:
    row = tx.conn.execute(select(users).where(users.c.id == user_id)).first()
    return _user(row) if row else None


def update_password_hash(tx: Tx, user_id: str, password_hash: str) -> None:
    tx.conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))


def insert_workspace(tx: Tx, workspace: Workspace) -> None:
    tx.conn.execute(
        insert(workspaces).values(
            id=workspace.id,
            slug=workspace.slug,
            name=workspace.name,
            is_personal=workspace.is_personal,
            created_at=workspace.created_at,
        )
    )


def slug_taken(tx: Tx, slug: str) -> bool:
    return (
        tx.conn.execute(select(workspaces.c.id).where(workspaces.c.slug == slug)).first()
        is not None
    )


def lock_workspace(tx: Tx, workspace_id: str, *, exclusive: bool) -> None:
    """Serialise writers of one workspace's events against its "all" operations.

    Ingestion takes the lock exclusively from before its rows get their ``seq`` until it
    commits; "mark all seen"/"archive all" take it shared before reading the newest
    ``seq``. So a watermark never passes over an event that commits later with a smaller
    ``seq`` (the archive-all race). SQLite writers are serialised already.

    The exclusive mode is ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: every insert of a
    row that references the workspace (an API key, a resource, the event itself) has
    PostgreSQL take ``FOR KEY SHARE`` on it for the foreign key, which ``FOR UPDATE``
    conflicts with. Two transactions that each inserted such a row and then asked for
    ``FOR UPDATE`` waited for each other: a deadlock (two keys created at once).
    ``FOR NO KEY UPDATE`` still excludes other writers and ``FOR SHARE``.
    """
    if tx.dialect != "postgresql":
        return
    stmt = select(workspaces.c.id).where(workspaces.c.id == workspace_id)
    if exclusive:
        tx.conn.execute(stmt.with_for_update(key_share=True))
    else:
        tx.conn.execute(stmt.with_for_update(read=True))


def insert_membership(tx: Tx, *, workspace_id: str, user_id: str, role: Role, at: datetime) -> None:
    tx.conn.execute(
        insert(memberships).values(
            workspace_id=workspace_id, user_id=user_id, role=role.value, created_at=at
        )
    )


def update_membership_role(tx: Tx, *, workspace_id: str, user_id: str, role: Role) -> None:
    tx.conn.execute(
        update(memberships)
        .where(and_(memberships.c.workspace_id == workspace_id, memberships.c.user_id == user_id))
        .values(role=role.value)
    )


def delete_membership(tx: Tx, *, workspace_id: str, user_id: str) -> None:
    tx.conn.execute(
        delete(memberships).where(
            memberships.c.workspace_id == workspace_id, memberships.c.user_id == user_id
        )
    )


def count_owners(tx: Tx, workspace_id: str) -> int:
    return int(
        tx.conn.execute(
            select(func.count()).where(
                memberships.c.workspace_id == workspace_id,
                memberships.c.role == Role.OWNER.value,
            )
        ).scalar_one()
    )


def select_member_by_email(tx: Tx, *, workspace_id: str, email: str) -> tuple[User, Role] | None:
    """The member of the workspace with that (normalised) e-mail, with their role."""
    row = tx.conn.execute(
        select(users, memberships.c.role)
        .join(memberships, memberships.c.user_id == users.c.id)
        .where(memberships.c.workspace_id == workspace_id, users.c.email == email)
    ).first()
    return (_user(row), Role(row.role)) if row else None


def select_memberships(tx: Tx, user_id: str) -> list[Membership]:
    """The user's workspaces, personal first, then by name."""
    rows = tx.conn.execute(
        select(workspaces, memberships.c.role)
        .join(memberships, memberships.c.workspace_id == workspaces.c.id)
        .where(memberships.c.user_id == user_id)
        .order_by(workspaces.c.is_personal.desc(), workspaces.c.name, workspaces.c.id)
    ).all()
    return [Membership(workspace=_workspace(r), role=Role(r.role)) for r in rows]


# Every request reads the session and the membership: their statements are built once,
# with named parameters (building them anew cost more than running them).
_MEMBERSHIP = (
    select(workspaces, memberships.c.role)
    .join(memberships, memberships.c.workspace_id == workspaces.c.id)
    .where(memberships.c.user_id == bindparam("user"))
)
_MEMBERSHIP_BY = {
    (True, False): _MEMBERSHIP.where(workspaces.c.slug == bindparam("slug")),
    (False, True): _MEMBERSHIP.where(workspaces.c.id == bindparam("ws")),
    (True, True): _MEMBERSHIP.where(
        workspaces.c.slug == bindparam("slug"), workspaces.c.id == bindparam("ws")
    ),
    (False, False): _MEMBERSHIP,
}


def select_membership(
    tx: Tx, *, user_id: str, slug: str | None = None, workspace_id: str | None = None
) -> Membership | None:
    stmt = _MEMBERSHIP_BY[slug is not None, workspace_id is not None]
    params = {"user": user_id, "slug": slug, "ws": workspace_id}
    row = tx.conn.execute(stmt, params).first()
    return Membership(workspace=_workspace(row), role=Role(row.role)) if row else None


def select_personal_workspace(tx: Tx, user_id: str) -> Workspace | None:
    row = tx.conn.execute(
        select(workspaces)
        .join(memberships, memberships.c.workspace_id == workspaces.c.id)
        .where(memberships.c.user_id == user_id, workspaces.c.is_personal.is_(True))
        .order_by(workspaces.c.created_at)
    ).first()
    return _workspace(row) if row else None


def select_member_ids(tx: Tx, workspace_id: str) -> list[str]:
    return list(
        tx.conn.execute(
            select(memberships.c.user_id).where(memberships.c.workspace_id == workspace_id)
        ).scalars()
    )


def insert_session(
    tx: Tx,
    *,
    id_hash: str,
    user_id: str,
    workspace_id: str,
    csrf_token: str,
    at: datetime,
    expires_at: datetime,
) -> None:
    tx.conn.execute(
        insert(sessions).values(
            id_hash=id_hash,
            user_id=user_id,
            workspace_id=workspace_id,
            csrf_token=csrf_token,
            created_at=at,
            last_seen_at=at,
            expires_at=expires_at,
        )
    )


_LIVE_SESSION = (
    select(sessions, users.c.email, users.c.name, users.c.created_at.label("user_created_at"))
    .join(users, users.c.id == sessions.c.user_id)
    .where(
        sessions.c.id_hash == bindparam("id_hash"),
        sessions.c.ended_at.is_(None),
        sessions.c.expires_at > bindparam("now"),
        sessions.c.last_seen_at > bindparam("idle_since"),
    )
)


def select_live_session(
    tx: Tx, id_hash: str, *, now: datetime, idle_since: datetime
) -> Session | None:
    """The session if it has not ended, expired or idled out."""
    params = {"id_hash": id_hash, "now": now, "idle_since": idle_since}
    row = tx.conn.execute(_LIVE_SESSION, params).first()
    return _session(row) if row is not None else None


def _session(row: Any) -> Session:
    user = User(id=row.user_id, email=row.email, name=row.name, created_at=row.user_created_at)
    return Session(
        id_hash=row.id_hash,
        user=user,
        workspace_id=row.workspace_id,
        csrf_token=row.csrf_token,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
    )


#: ``_LIVE_SESSION`` with the user's membership of the session's active workspace (the
#: ``ws_`` columns and ``role``; ``session_in_workspace`` reads them). Outer joins: a
#: session whose workspace the user has left is still live; its membership columns are
#: NULL. ``states.select_live_session_for_feed`` adds the viewer's marks to it.
LIVE_SESSION_IN_WORKSPACE = _LIVE_SESSION.add_columns(
    workspaces.c.id.label("ws_id"),
    workspaces.c.slug.label("ws_slug"),
    workspaces.c.name.label("ws_name"),
    workspaces.c.is_personal.label("ws_is_personal"),
    workspaces.c.created_at.label("ws_created_at"),
    memberships.c.role,
)
LIVE_SESSION_IN_WORKSPACE = LIVE_SESSION_IN_WORKSPACE.outerjoin(
    memberships,
    and_(
        memberships.c.workspace_id == sessions.c.workspace_id,
        memberships.c.user_id == sessions.c.user_id,
    ),
).outerjoin(workspaces, workspaces.c.id == memberships.c.workspace_id)


def session_in_workspace(row: Any) -> tuple[Session, Membership | None]:
    """The session and its membership in a row of ``LIVE_SESSION_IN_WORKSPACE``."""
    membership = (
        Membership(workspace=_workspace(row, "ws_"), role=Role(row.role))
        if row.ws_id is not None
        else None
    )
    return _session(row), membership


def select_live_session_hashes(
    tx: Tx, id_hashes: Collection[str], *, now: datetime, idle_since: datetime
) -> set[str]:
    """Which of the sessions are live, by the same rule as ``select_live_session``
    (one query for many; the live stream re-checks its open connections with it)."""
    if not id_hashes:
        return set()
    return set(
        tx.conn.execute(
            select(sessions.c.id_hash).where(
                sessions.c.id_hash.in_(list(id_hashes)),
                sessions.c.ended_at.is_(None),
                sessions.c.expires_at > now,
                sessions.c.last_seen_at > idle_since,
            )
        ).scalars()
    )


def select_member_pairs(tx: Tx, user_ids: Collection[str]) -> set[tuple[str, str]]:
    """Every (workspace id, user id) membership of the given users."""
    if not user_ids:
        return set()
    rows = tx.conn.execute(
        select(memberships.c.workspace_id, memberships.c.user_id).where(
            memberships.c.user_id.in_(list(user_ids))
        )
    )
    return {(r[0], r[1]) for r in rows}


def touch_session(tx: Tx, id_hash: str, at: datetime) -> None:
    tx.conn.execute(update(sessions).where(sessions.c.id_hash == id_hash).values(last_seen_at=at))


def update_session_workspace(tx: Tx, id_hash: str, workspace_id: str) -> None:
    tx.conn.execute(
        update(sessions).where(sessions.c.id_hash == id_hash).values(workspace_id=workspace_id)
    )


def move_sessions(tx: Tx, *, user_id: str, from_workspace: str, to_workspace: str) -> int:
    """Point the user's sessions whose active workspace is ``from_workspace`` at
    ``to_workspace``; how many."""
    result = tx.conn.execute(
        update(sessions)
        .where(sessions.c.user_id == user_id, sessions.c.workspace_id == from_workspace)
        .values(workspace_id=to_workspace)
    )
    return int(result.rowcount)


def end_session(tx: Tx, id_hash: str, at: datetime) -> None:
    tx.conn.execute(
        update(sessions)
        .where(sessions.c.id_hash == id_hash, sessions.c.ended_at.is_(None))
        .values(ended_at=at)
    )


def end_user_sessions(tx: Tx, user_id: str, at: datetime, *, keep: str | None = None) -> int:
    """End the user's open sessions but ``keep``; returns how many were ended."""
    stmt = update(sessions).where(sessions.c.user_id == user_id, sessions.c.ended_at.is_(None))
    if keep is not None:
        stmt = stmt.where(sessions.c.id_hash != keep)
    return tx.conn.execute(stmt.values(ended_at=at)).rowcount


def insert_login_failure(tx: Tx, *, email: str, address: str, at: datetime) -> None:
    tx.conn.execute(insert(login_failures).values(email=email, address=address, failed_at=at))


def count_login_failures(
    tx: Tx, *, since: datetime, email: str | None = None, address: str | None = None
) -> tuple[int, datetime | None]:
    """How many failures since ``since`` for the e-mail or address, and the oldest one."""
    stmt = select(func.count(), func.min(login_failures.c.failed_at)).where(
        login_failures.c.failed_at > since
    )
    if email is not None:
        stmt = stmt.where(login_failures.c.email == email)
    if address is not None:
        stmt = stmt.where(login_failures.c.address == address)
    count, oldest = tx.conn.execute(stmt).one()
    # SQLite hands back naive datetimes from an aggregate; they are UTC.
    if isinstance(oldest, datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return int(count), oldest


def delete_login_failures(tx: Tx, *, email: str, address: str) -> None:
    tx.conn.execute(
        delete(login_failures).where(
            login_failures.c.email == email, login_failures.c.address == address
        )
    )


def prune_login_failures(tx: Tx, *, before: datetime) -> None:
    tx.conn.execute(delete(login_failures).where(login_failures.c.failed_at < before))

"""Workspaces: the access check, team workspaces, members, switching, unseen counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from activityfeed.domain.accounts import Membership, Session, Workspace
from activityfeed.domain.ids import new_id
from activityfeed.domain.workspaces import Role
from activityfeed.errors import Conflict, Forbidden, InvalidRequest, NotFound
from activityfeed.services.accounts import clean_name, is_storable, normalise_email, unique_slug
from activityfeed.store import accounts as store
from activityfeed.store import events as event_store
from activityfeed.store import states as state_store
from activityfeed.store.db import Tx


def access_workspace(
    tx: Tx, *, user_id: str, slug: str | None = None, workspace_id: str | None = None
) -> Membership:
    """The caller's membership of the workspace named by slug or id.

    Raises ``NotFound`` alike for a workspace that does not exist and for one the
    caller does not belong to.
    """
    # A name the database cannot even hold names nothing: the same 404, not a crash.
    is_valid = all(is_storable(v) for v in (slug, workspace_id) if v is not None)
    membership = (
        store.select_membership(tx, user_id=user_id, slug=slug, workspace_id=workspace_id)
        if is_valid
        else None
    )
    if membership is None:
        raise NotFound("No workspace of yours has that name.")
    return membership


def active_workspace(tx: Tx, session: Session, owner: str | None) -> Membership:
    """The workspace an activity request acts on: ``owner`` if given, else the active one."""
    if owner:
        return access_workspace(tx, user_id=session.user.id, slug=owner)
    return access_workspace(tx, user_id=session.user.id, workspace_id=session.workspace_id)


def create_workspace(tx: Tx, *, user_id: str, name: str, now: datetime) -> Workspace:
    name = clean_name(name, field="name", max_length=200, what="A workspace name")
    workspace = Workspace(
        id=new_id("w_"),
        slug=unique_slug(tx, name),
        name=name,
        is_personal=False,
        created_at=now,
    )
    store.insert_workspace(tx, workspace)
    store.insert_membership(tx, workspace_id=workspace.id, user_id=user_id, role=Role.OWNER, at=now)
    return workspace


def add_member(
    tx: Tx, *, user_id: str, slug: str, email: str, role: Role, now: datetime
) -> Membership:
    """Add an existing user to a team workspace (owners and admins only).

    Only an owner may make another owner. An unknown e-mail is ``not_found``; a user who
    is a member already is ``already_member`` (409).
    """
    mine = access_workspace(tx, user_id=user_id, slug=slug)
    if not mine.role.can_manage_members:
        raise Forbidden("Only the workspace's owners and admins can add members.")
    if mine.workspace.is_personal:
        raise InvalidRequest(
            "A personal workspace has one member; create a team workspace to share.",
            field="slug",
        )
    if role is Role.OWNER and mine.role is not Role.OWNER:
        raise Forbidden("Only an owner can make another owner.")
    found = store.select_user_by_email(tx, normalise_email(email))
    if found is None:
        raise NotFound("No user has that e-mail address; they need an account first.")
    member = found[0]
    if store.select_membership(tx, user_id=member.id, workspace_id=mine.workspace.id):
        raise Conflict(f"{member.email} is a member already.", code="already_member")
    store.insert_membership(
        tx, workspace_id=mine.workspace.id, user_id=member.id, role=role, at=now
    )
    return Membership(workspace=mine.workspace, role=role)


def switch_workspace(tx: Tx, session: Session, slug: str) -> Membership:
    membership = access_workspace(tx, user_id=session.user.id, slug=slug)
    store.update_session_workspace(tx, session.id_hash, membership.workspace.id)
    return membership


@dataclass(frozen=True, slots=True)
class WorkspaceSummary:
    membership: Membership
    unseen_count: int
    is_active: bool


def unseen_count(tx: Tx, *, user_id: str, workspace_id: str) -> int:
    """Unseen events in the viewer's Inbox of that workspace (exact, history-independent).

    In a write transaction (PostgreSQL: each statement sees the latest commits) it takes
    the workspace's shared lock before reading the head, so that no event commits between
    reading the head and counting; a read transaction reads one snapshot anyway. The
    viewer's lock (``select_marks``) comes first, the order every state change uses.
    """
    marks = state_store.select_marks(tx, user_id=user_id, workspace_id=workspace_id)
    if tx.is_write:
        store.lock_workspace(tx, workspace_id, exclusive=False)
    _, head_ord = event_store.select_head(tx, workspace_id)
    return state_store.count_unseen(
        tx, user_id=user_id, workspace_id=workspace_id, marks=marks, head_ord=head_ord
    )


def list_workspaces(tx: Tx, session: Session) -> list[WorkspaceSummary]:
    return [
        WorkspaceSummary(
            membership=m,
            unseen_count=unseen_count(tx, user_id=session.user.id, workspace_id=m.workspace.id),
            is_active=m.workspace.id == session.workspace_id,
        )
        for m in store.select_memberships(tx, session.user.id)
    ]

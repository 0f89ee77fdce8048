"""Workspaces: the access check, team workspaces, members, switching, unseen counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from activityfeed.domain.accounts import Membership, Session, User, Workspace
from activityfeed.domain.ids import new_id
from activityfeed.domain.workspaces import Role
from activityfeed.errors import Conflict, Forbidden, InvalidRequest, NotFound
from activityfeed.services import apikeys
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


def active_workspace(
    tx: Tx, session: Session, owner: str | None, *, known: Membership | None = None
) -> Membership:
    """The workspace an activity request acts on: ``owner`` if given, else the active one.

    ``known``: the membership of the session's workspace when the caller has read it
    already (``SessionLookup.within_workspace``); without it, or when it is None because
    the user left that workspace, the look-up (and its ``NotFound``) happens here.
    """
    if owner:
        return access_workspace(tx, user_id=session.user.id, slug=owner)
    if known is not None and known.workspace.id == session.workspace_id:
        return known
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


def _address_or_none(email: str) -> str | None:
    """The normalised address, or None for text that cannot be anyone's address."""
    if not is_storable(email):
        return None
    try:
        return normalise_email(email)
    except InvalidRequest:
        return None


def remove_member(tx: Tx, *, user: User, slug: str, email: str, now: datetime) -> tuple[User, Role]:
    """Take a member out of a team workspace: owners and admins remove others, anyone
    may leave. Only an owner removes an owner, and the last owner stays. The member's
    API keys for the workspace are revoked (``apikeys.revoke_keys_of_departed``).

    The checks run in an order that reveals nothing to whom they refuse: the workspace
    (404 for unknown and foreign alike), then the caller's right, and only then whether
    the e-mail names a member (404). The removed user's sessions that had this workspace
    active move to their personal workspace; their open streams end at the next access
    check (``web.sse``), and their seen/archived state stays for a return. Returns the
    removed member with the role they had.
    """
    user_id, user_email = user.id, user.email
    mine = access_workspace(tx, user_id=user_id, slug=slug)
    if mine.workspace.is_personal:
        raise InvalidRequest(
            "A personal workspace has one member, who cannot be removed.", field="slug"
        )
    # Serialise removals of one workspace (PostgreSQL; SQLite writers are serial), so
    # that two owners cannot each remove the other and leave it without one.
    store.lock_workspace(tx, mine.workspace.id, exclusive=True)
    mine = access_workspace(tx, user_id=user_id, workspace_id=mine.workspace.id)  # after the lock
    target_email = _address_or_none(email)
    leaving = target_email == user_email
    if not leaving and not mine.role.can_manage_members:
        raise Forbidden("Only the workspace's owners and admins can remove members.")
    found = (
        store.select_member_by_email(tx, workspace_id=mine.workspace.id, email=target_email)
        if target_email
        else None
    )
    if found is None:
        raise NotFound("No member of this workspace has that e-mail address.")
    member, role = found
    if role is Role.OWNER and not leaving and mine.role is not Role.OWNER:
        raise Forbidden("Only an owner can remove an owner.")
    if role is Role.OWNER and store.count_owners(tx, mine.workspace.id) <= 1:
        raise Conflict(
            "The last owner cannot be removed; make another member an owner first.",
            code="last_owner",
        )
    store.delete_membership(tx, workspace_id=mine.workspace.id, user_id=member.id)
    apikeys.revoke_keys_of_departed(
        tx, workspace_id=mine.workspace.id, creator=member, by=user, now=now
    )
    personal = store.select_personal_workspace(tx, member.id)
    if personal is not None:
        store.move_sessions(
            tx, user_id=member.id, from_workspace=mine.workspace.id, to_workspace=personal.id
        )
    return member, role


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
    return unseen_counts(tx, user_id=user_id, workspace_ids=[workspace_id])[workspace_id]


def unseen_counts(tx: Tx, *, user_id: str, workspace_ids: Sequence[str]) -> dict[str, int]:
    """``unseen_count`` in each of the viewer's ``workspace_ids``: in a read transaction
    one statement for all of them (``states.count_unseen_in``)."""
    if not tx.is_write:
        return state_store.count_unseen_in(tx, user_id=user_id, workspace_ids=workspace_ids)
    counts = {}
    for workspace_id in workspace_ids:
        marks = state_store.select_marks(tx, user_id=user_id, workspace_id=workspace_id)
        store.lock_workspace(tx, workspace_id, exclusive=False)
        _, head_ord = event_store.select_head(tx, workspace_id)
        counts[workspace_id] = state_store.count_unseen(
            tx, user_id=user_id, workspace_id=workspace_id, marks=marks, head_ord=head_ord
        )
    return counts


def list_workspaces(tx: Tx, session: Session) -> list[WorkspaceSummary]:
    memberships = store.select_memberships(tx, session.user.id)
    unseen = unseen_counts(
        tx, user_id=session.user.id, workspace_ids=[m.workspace.id for m in memberships]
    )
    return [
        WorkspaceSummary(
            membership=m,
            unseen_count=unseen[m.workspace.id],
            is_active=m.workspace.id == session.workspace_id,
        )
        for m in memberships
    ]

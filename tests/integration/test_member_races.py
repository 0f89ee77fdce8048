"""Two owners who remove each other, or both leave, at once keep one owner.

``remove_member`` takes the workspace's exclusive lock and only then reads the caller's
membership and counts the owners. Without the lock each removal reads a workspace with
two owners and deletes a different row, so both commit and the workspace has none.

The first removal is held open until the second provably waits for it (PostgreSQL's row
lock, SQLite's write lock), so the interleaving is the same on every run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from activityfeed.domain.accounts import User, Workspace
from activityfeed.domain.workspaces import Role
from activityfeed.errors import Conflict, NotFound
from activityfeed.services import workspaces
from activityfeed.store.db import Database
from activityfeed.store.schema import memberships
from tests.factories import make_team, make_user
from tests.integration.test_state_races import in_other_tab, wait_until_blocked


def _two_owners(db: Database, clock) -> tuple[User, User, Workspace]:
    alice = make_user(db, clock, name="Alice")
    bob = make_user(db, clock, name="Bob")
    team = make_team(db, clock, alice, [(bob, Role.OWNER)], name="Two owners")
    return alice, bob, team


def _owners(db: Database, team: Workspace) -> list[str]:
    with db.read() as tx:
        return list(
            tx.conn.execute(
                select(memberships.c.user_id).where(
                    memberships.c.workspace_id == team.id,
                    memberships.c.role == Role.OWNER.value,
                )
            ).scalars()
        )


def _remove(db: Database, caller: User, team: Workspace, member: User) -> tuple[User, Role]:
    with db.write() as tx:
        return workspaces.remove_member(
            tx, user=caller, slug=team.slug, email=member.email, now=datetime.now(UTC)
        )


def _race(
    db: Database, team: Workspace, first: tuple[User, User], second: tuple[User, User]
) -> list[BaseException]:
    """Run the first removal, hold its transaction open until the second waits for it,
    then commit; the errors of the second."""
    (caller, member), (other_caller, other_member) = first, second
    with db.write() as tx:
        removed, role = workspaces.remove_member(
            tx, user=caller, slug=team.slug, email=member.email, now=datetime.now(UTC)
        )
        assert (removed.id, role) == (member.id, Role.OWNER)
        thread, errors = in_other_tab(lambda: _remove(db, other_caller, team, other_member))
        wait_until_blocked(db, or_done=thread)
    thread.join(30)
    assert not thread.is_alive()
    return errors


def test_two_owners_removing_each_other_at_once(db, clock):
    """The second caller is no longer a member once the first commits: 404, as for any
    workspace that is not theirs (not 409 ``last_owner``, which a membership read before
    the lock would give), and the first caller stays the one owner."""
    alice, bob, team = _two_owners(db, clock)

    errors = _race(db, team, first=(alice, bob), second=(bob, alice))

    assert _owners(db, team) == [alice.id]
    assert [type(e) for e in errors] == [NotFound]


def test_two_owners_leaving_at_once(db, clock):
    """The second to leave is then the last owner: 409 ``last_owner``, and they stay."""
    alice, bob, team = _two_owners(db, clock)

    errors = _race(db, team, first=(alice, alice), second=(bob, bob))

    assert _owners(db, team) == [bob.id]
    assert [type(e) for e in errors] == [Conflict]
    assert isinstance(errors[0], Conflict)
    assert errors[0].code == "last_owner"
